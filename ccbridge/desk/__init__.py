"""The agent's desk (issue 14): live supervision, transfer, hold and conference of calls."""
