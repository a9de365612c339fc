"""Bounces and complaints: SNS/SES parsing (pure), rules and the guard (pure)."""
