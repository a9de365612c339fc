"""PostgreSQL for several hosts (issue 16): so far its schema and `jpixd migrate`."""
