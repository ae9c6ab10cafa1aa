"""`ccbridge loadtest`: SIPp load on the lab or any Asterisk, faults on a timeline, a report."""
