"""Node classes (classic ComfyUI API). Node ids start with MotionRAG and never change."""
from . import motion_nodes, render_nodes, retrieval_nodes
from . import i2v_loader_nodes, i2v_nodes
from . import t2m_nodes, t2m_chain_nodes
from . import video_motion_nodes
from . import native_svd_nodes
from .comfy_env import register_model_folder

register_model_folder()

NODE_CLASS_MAPPINGS = {
    **motion_nodes.NODE_CLASS_MAPPINGS,
    **render_nodes.NODE_CLASS_MAPPINGS,
    **retrieval_nodes.NODE_CLASS_MAPPINGS,
    **i2v_loader_nodes.NODE_CLASS_MAPPINGS,
    **i2v_nodes.NODE_CLASS_MAPPINGS,
    **t2m_nodes.NODE_CLASS_MAPPINGS,
    **t2m_chain_nodes.NODE_CLASS_MAPPINGS,
    **video_motion_nodes.NODE_CLASS_MAPPINGS,
    **native_svd_nodes.NODE_CLASS_MAPPINGS,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    **motion_nodes.NODE_DISPLAY_NAME_MAPPINGS,
    **render_nodes.NODE_DISPLAY_NAME_MAPPINGS,
    **retrieval_nodes.NODE_DISPLAY_NAME_MAPPINGS,
    **i2v_loader_nodes.NODE_DISPLAY_NAME_MAPPINGS,
    **i2v_nodes.NODE_DISPLAY_NAME_MAPPINGS,
    **t2m_nodes.NODE_DISPLAY_NAME_MAPPINGS,
    **t2m_chain_nodes.NODE_DISPLAY_NAME_MAPPINGS,
    **video_motion_nodes.NODE_DISPLAY_NAME_MAPPINGS,
    **native_svd_nodes.NODE_DISPLAY_NAME_MAPPINGS,
}
