"""Everything a QA engineer reads: overlays, the roll report and textile grading.

Modules: ``calibration`` (pixel -> millimetre scale), ``records`` (plain per-frame detection
records shared by the writers and the roll report), ``grading`` (4-point / 10-point rules,
pure functions), ``roll`` (frames -> roll positions, cross-frame joining, the roll report),
``caveats`` (what a verdict rests on unchecked), ``html`` (the self-contained
``roll_report.html``), ``roll_files`` (writing the report files), ``palette`` (class colours),
``labels`` (reading COCO / Tianchi annotation and result files for drawing), ``overlay`` (cv2
drawing), ``label_layout`` (label placement), ``compose`` (sheets, side by side, thumbnails).
"""
