"""MotionRAG Suite: motion retrieval-augmented generation for ComfyUI."""
from pathlib import Path

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]


def _place_example_inputs() -> None:
    """Copy the images the shipped workflows' Load Image nodes name (workflows/input/) into ComfyUI's
    input folder, where Load Image looks, unless a file of that name is already there (a user's own
    image is never replaced). Outside ComfyUI (no folder_paths) there is nothing to do; a read-only
    input folder only means the user picks another image, so no error stops the pack loading."""
    try:
        import folder_paths
    except ImportError:
        return
    try:
        target = Path(folder_paths.get_input_directory())
        for src in sorted((Path(__file__).parent / "workflows" / "input").glob("*.png")):
            dst = target / src.name
            if not dst.exists():
                target.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(src.read_bytes())
    except OSError as exc:
        print(f"[MotionRAG] could not place the example images in ComfyUI's input folder: {exc}")


def _place_when_the_server_starts() -> None:
    # ComfyUI applies --input-directory only after loading the custom nodes (the 2024 version), so
    # the copy waits for the web server's start-up, when the folder is final; without a server
    # (the pack imported by other tools) it is done now.
    try:
        from server import PromptServer

        app = PromptServer.instance.app
    except (ImportError, AttributeError):
        _place_example_inputs()
        return

    async def on_startup(_app):
        _place_example_inputs()

    app.on_startup.append(on_startup)


_place_when_the_server_starts()
