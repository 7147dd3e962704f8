"""driftline.stream"""
