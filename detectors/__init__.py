"""driftline.detectors"""
