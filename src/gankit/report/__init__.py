"""Pages and figures, made from what a run directory or a detector folder holds (nothing else).

  markup.py         the HTML both pages are made of: the style sheet, images as data URIs, values as safe text
  plots.py          matplotlib figures from metrics.jsonl: loss curves, metric curves against the floor
  run_page.py       `gankit report RUN_DIR` -> RUN_DIR/report.html
  detector_page.py  `gankit report DETECTOR_DIR` -> DETECTOR_DIR/report.html, and the evaluations table

This file imports nothing.
"""
