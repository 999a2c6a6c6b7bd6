"""Render Skeleton: a 3D stick-figure view or OpenPose frames for pose ControlNets."""
from __future__ import annotations

from ..models.motion.motiondiff_compat import from_motion_data
from . import comfy_env

MODES = ("3d", "openpose")
CAMERAS = ("follow", "fixed")


class RenderSkeleton:
    DESCRIPTION = ("Renders a motion to an IMAGE batch. '3d': perspective camera, ground grid, root trail, "
                   "left limbs blue and right limbs red. 'openpose': the 18-keypoint OpenPose body on black "
                   "for pose ControlNets, with POSE_KEYPOINT JSON.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "render"
    RETURN_TYPES = ("IMAGE", "POSE_KEYPOINT", "FLOAT")
    RETURN_NAMES = ("images", "pose_keypoint", "fps")
    OUTPUT_TOOLTIPS = ("Frames [T, H, W, 3] in 0..1.",
                       "OpenPose keypoints per frame (the layout comfyui_controlnet_aux uses).",
                       "Frame rate of the frames.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": ("MOTION_DATA", {"tooltip": "The motion to render."}),
                "mode": (list(MODES), {"default": "3d", "tooltip": "3d stick figure, or OpenPose skeleton on black."}),
                "width": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8, "tooltip": "Frame width in pixels."}),
                "height": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8, "tooltip": "Frame height in pixels."}),
                "azimuth": ("FLOAT", {"default": 30.0, "min": -360.0, "max": 360.0, "step": 5.0,
                                      "tooltip": "Camera angle around the figure in degrees; 0 = in front of a figure facing +Z."}),
                "elevation": ("FLOAT", {"default": 15.0, "min": -89.0, "max": 89.0, "step": 1.0,
                                        "tooltip": "Camera height angle in degrees; positive looks down."}),
                "distance": ("FLOAT", {"default": 4.0, "min": 0.5, "max": 50.0, "step": 0.1,
                                       "tooltip": "Camera distance from its target in metres."}),
                "camera": (list(CAMERAS), {"default": "follow",
                                           "tooltip": "follow: track the pelvis; fixed: frame the whole clip."}),
                "fps": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 120.0, "step": 1.0,
                                  "tooltip": "Output frame rate; 0 keeps the motion's (the library is 20 fps)."}),
                "grid": ("BOOLEAN", {"default": True, "tooltip": "Draw the ground grid (3d mode)."}),
                "trail": ("BOOLEAN", {"default": True, "tooltip": "Draw the pelvis path on the floor (3d mode)."}),
            },
        }

    def render(self, motion, mode, width, height, azimuth, elevation, distance, camera, fps, grid, trail):
        import torch

        from ..models.render import openpose, skeleton3d
        from ..models.render.camera import validate_size

        m = from_motion_data(motion)
        if fps and fps > 0:
            m = m.resampled(fps)
        # The limit counts what this node really holds: the uint8 frames and, beside them while they are
        # converted, ComfyUI's float32 IMAGE (4 bytes a value), before anything is rendered.
        validate_size(int(width), int(height))
        skeleton3d.check_output_size(m.num_frames, int(width), int(height), "motion", bytes_per_value=1 + 4)
        view = dict(width=int(width), height=int(height), azimuth=float(azimuth), elevation=float(elevation),
                    distance=float(distance), follow=camera == "follow", on_frame=comfy_env.progress(m.num_frames))
        if mode == "3d":
            frames = skeleton3d.render_3d(m.joints, grid=bool(grid), trail=bool(trail), **view)
            keypoints = openpose.pose_keypoints(m.joints, **{k: v for k, v in view.items() if k != "on_frame"})
        else:
            frames, keypoints = openpose.render_openpose(m.joints, **view)
        images = _as_image(torch, frames)
        del frames
        return (images, keypoints, float(m.fps))


def _as_image(torch, frames, chunk: int = 16):
    """ComfyUI's float32 IMAGE from uint8 frames, converted a few frames at a time: no float temporary
    of the whole video beside the result."""
    images = torch.empty(frames.shape, dtype=torch.float32)
    for i in range(0, len(frames), chunk):
        images[i:i + chunk] = torch.from_numpy(frames[i:i + chunk])
        images[i:i + chunk].div_(255.0)
    return images


NODE_CLASS_MAPPINGS = {"MotionRAGRenderSkeleton": RenderSkeleton}
NODE_DISPLAY_NAME_MAPPINGS = {"MotionRAGRenderSkeleton": "Render Skeleton (MotionRAG)"}
