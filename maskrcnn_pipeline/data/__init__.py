"""Datasets: the embedded synthetic demo data and loaders for COCO-format datasets."""
