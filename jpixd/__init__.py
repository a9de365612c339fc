"""jpixd: NTT East/West construction and outage notices, mailed reliably through SES."""

__version__ = "0.1.0"
