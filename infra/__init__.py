"""reportrelay's AWS side as CDK constructs: one per capability, composed by ``stack.ReportRelayStack``."""
