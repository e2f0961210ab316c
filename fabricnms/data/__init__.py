"""Data: Tianchi release I/O, COCO I/O, the synthetic fabric generator, the torch dataset."""
