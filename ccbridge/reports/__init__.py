"""Reports over the operating record (issue 12): interval and agent reports in each site's
own time zone, the call list, CSV and charts.

- ``intervals.py``: local buckets (15/30/60 min, day) as UTC spans, DST nights included;
- ``query.py``: the parameters, parsed and bounded (pure);
- ``queries.py``: the SQL, sums per UTC quarter hour over the store's indexes;
- ``figures.py``: the sums and the formulas (docs/reports.md writes them out);
- ``build.py``: the reports: queries per site, quarter hours into buckets, gaps marked;
- ``calls.py``: the call list (keyset pages) and one call with its legs and events;
- ``csvout.py``, ``chart.py``, ``cli.py``: CSV, the PNG chart, ``ccbridge report``.
"""
