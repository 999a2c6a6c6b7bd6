"""Skeleton renderers: a perspective 3D view and the OpenPose 18-keypoint layout."""
