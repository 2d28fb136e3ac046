"""What fmviz writes for people and scripts: manifests, scan reports, HTML pages, terminal tables.

- :mod:`.manifest`: ``manifest.json`` of ``fmviz run``;
- :mod:`.deadfilters`: the dead-filter report and its JSON/Markdown/CSV writers;
- :mod:`.gallery`: the self-contained HTML pages (assets in ``assets/``);
- :mod:`.console`: tables and progress on the terminal.
"""
