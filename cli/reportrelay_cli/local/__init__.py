"""Running reportrelay on one machine: emulated AWS, the job runner and the CLI's building blocks."""
