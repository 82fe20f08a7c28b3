"""reportrelay: fetch long-running vendor reports into S3 through one Step Functions workflow."""

__version__ = "0.1.0"
