"""Staffing: Erlang C, demand forecast, requirement and follow-the-sun coverage."""
