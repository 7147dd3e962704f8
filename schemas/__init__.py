"""driftline.schemas"""
