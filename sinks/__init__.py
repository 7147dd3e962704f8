"""driftline.sinks"""
