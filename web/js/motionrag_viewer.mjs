// The 3D skeleton viewer behind the MotionRAG preview widget, drawn on a plain 2D canvas: the
// joints go through a perspective camera that orbits the motion, the bones are drawn as thick
// lines from the farthest to the nearest (so nearer limbs cover farther ones), with the floor grid
// and the pelvis path under them. No three.js and no WebGL: ComfyUI's Vue frontend bundles a
// three.js of its own, and a second copy made it warn on every preview; a 2D canvas also has no
// per-page limit like WebGL's ~16 contexts. No ComfyUI imports here, so the viewer works on any page.
//
// The module keeps the .mjs extension on purpose: ComfyUI loads every *.js file under the pack's
// WEB_DIRECTORY as a front-end extension with the page, and this is a library that
// motionrag_preview.js imports only when a preview first shows a motion.

const FORMAT = "motionrag-preview/1";
const BACKGROUND = "#202226";
const SIDE_COLOURS = { l: "#4f8ff7", r: "#ef5350", c: "#d8dce3" };
const GRID_COLOUR = "#393c44";
const GRID_AXIS_COLOUR = "#555a66";
const PATH_COLOUR = "#c9a227";
const BONE_RADIUS = 0.025;   // metres, drawn at the bone's depth
const JOINT_RADIUS = 0.035;
const HEAD_SCALE = 2.6;
const FOV_Y = 40 * Math.PI / 180;
const NEAR = 0.05;           // points nearer the camera than this (metres) are not drawn

// base64 int16 joints -> {frames, joints, fps, parents, sides, positions (Float32Array, metres)}.
export function decodePayload(payload) {
    if (!payload || payload.format !== FORMAT) {
        throw new Error(`format ${payload?.format} is not ${FORMAT}`);
    }
    const { frames, joints, scale, origin } = payload;
    if (!(frames > 0) || !(joints > 0) || !(scale > 0) || payload.parents?.length !== joints) {
        throw new Error("frames, joints, scale or parents are missing or invalid");
    }
    const bin = atob(payload.data);
    const count = frames * joints * 3;
    if (bin.length !== count * 2) {
        throw new Error(`data holds ${bin.length / 2} values, expected ${count}`);
    }
    const positions = new Float32Array(count);
    for (let i = 0; i < count; i++) {
        let v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8); // little-endian int16
        if (v >= 0x8000) v -= 0x10000;
        positions[i] = v * scale + origin[i % 3];
    }
    return {
        frames, joints, positions,
        fps: payload.fps > 0 ? payload.fps : 20,
        parents: payload.parents,
        sides: payload.sides ?? new Array(joints).fill("c"),
        bounds: payload.bounds,
        head: Number.isInteger(payload.head) ? payload.head : -1,
    };
}

// A perspective camera looking from `eye` at `target`, Y up: world points to camera space
// (x right, y up, z the distance in front) and camera space to canvas pixels.
class Camera {
    constructor(orbit, width, height) {
        const { azimuth, elevation, distance, target } = orbit;
        const ce = Math.cos(elevation);
        this.eye = [target[0] + distance * ce * Math.sin(azimuth),
                    target[1] + distance * Math.sin(elevation),
                    target[2] + distance * ce * Math.cos(azimuth)];
        // forward = from the eye to the target; right = forward x up; up' = right x forward
        const f = normalize([target[0] - this.eye[0], target[1] - this.eye[1], target[2] - this.eye[2]]);
        const r = normalize([-f[2], 0, f[0]]);   // f x (0, 1, 0); elevation stays within +-83 degrees
        this.forward = f;
        this.right = r;
        this.up = [r[1] * f[2] - r[2] * f[1], r[2] * f[0] - r[0] * f[2], r[0] * f[1] - r[1] * f[0]];
        this.cx = width / 2;
        this.cy = height / 2;
        this.focal = height / 2 / Math.tan(FOV_Y / 2);
    }

    toCamera(x, y, z) {
        const dx = x - this.eye[0], dy = y - this.eye[1], dz = z - this.eye[2];
        const { right: r, up: u, forward: f } = this;
        return [dx * r[0] + dy * r[1] + dz * r[2], dx * u[0] + dy * u[1] + dz * u[2],
                dx * f[0] + dy * f[1] + dz * f[2]];
    }

    toScreen([x, y, z]) {
        return [this.cx + this.focal * x / z, this.cy - this.focal * y / z];
    }

    // The part of segment a-b (camera space) in front of the near plane, or null.
    clip(a, b) {
        if (a[2] < NEAR && b[2] < NEAR) return null;
        if (a[2] >= NEAR && b[2] >= NEAR) return [a, b];
        const t = (NEAR - a[2]) / (b[2] - a[2]);
        const cut = [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), NEAR];
        return a[2] < NEAR ? [cut, b] : [a, cut];
    }
}

function normalize(v) {
    const n = Math.hypot(v[0], v[1], v[2]) || 1;
    return [v[0] / n, v[1] / n, v[2] / n];
}

export class MotionViewer {
    constructor(container, { onFrame } = {}) {
        this.container = container;
        this.onFrame = onFrame ?? (() => {});
        this.motion = null;
        this.frame = 0;
        this.playing = false;
        // Orbit state: azimuth from +Z (the motion's facing), elevation, distance, the point looked at.
        this.orbit = { azimuth: 0.6, elevation: 0.25, distance: 4, target: [0, 0.9, 0] };
        // False once getting a 2D context has failed; until then we assume it will work.
        this.available = true;
        this.canvas = null;
        this._clock = 0;
        this._raf = 0;
    }

    // The canvas is made on the first motion, not with the widget: a workflow may hold many motion
    // nodes that never run, and each canvas holds a backing store. dispose() gives it back.
    _ensureCanvas() {
        if (this.canvas || !this.available) return this.available;
        const canvas = document.createElement("canvas");
        const ctx = canvas.getContext("2d", { alpha: false });
        if (!ctx) {  // never expected of a browser; the widget says so instead of drawing
            this.available = false;
            return false;
        }
        this.canvas = canvas;
        this.ctx = ctx;
        this.container.prepend(canvas);
        // One signal removes every listener the viewer adds (see dispose()).
        this._listeners = new AbortController();
        this._bindOrbit(this._listeners.signal);
        this._resizeObserver = new ResizeObserver(() => this.render());
        this._resizeObserver.observe(this.container);
        return true;
    }

    // Events the viewer acts on are marked with preventDefault(), so that the page around it
    // (motionrag_preview.js) can pass the others on to the graph canvas.
    _bindOrbit(signal) {
        const c = this.canvas;
        let drag = null;
        c.addEventListener("pointerdown", (e) => {
            if (e.button !== 0 || !this.motion) return;
            e.preventDefault();
            drag = { x: e.clientX, y: e.clientY, az: this.orbit.azimuth, el: this.orbit.elevation };
            c.setPointerCapture(e.pointerId);
            c.style.cursor = "grabbing";
        }, { signal });
        c.addEventListener("pointermove", (e) => {
            if (!drag) return;
            const scale = 2 * Math.PI / Math.max(200, c.clientWidth);
            this.orbit.azimuth = drag.az - (e.clientX - drag.x) * scale;
            this.orbit.elevation = Math.min(1.45, Math.max(-0.2, drag.el + (e.clientY - drag.y) * scale));
            this.render();
        }, { signal });
        const end = (e) => {
            drag = null;
            c.style.cursor = "";
            if (c.hasPointerCapture?.(e.pointerId)) c.releasePointerCapture(e.pointerId);
        };
        c.addEventListener("pointerup", end, { signal });
        c.addEventListener("pointercancel", end, { signal });
        c.addEventListener("wheel", (e) => {
            if (!this.motion) return;
            e.preventDefault();
            const factor = Math.exp(Math.sign(e.deltaY) * 0.1);
            this.orbit.distance = Math.min(100, Math.max(0.5, this.orbit.distance * factor));
            this.render();
        }, { passive: false, signal });
        c.addEventListener("dblclick", (e) => {
            if (!this.motion) return;
            e.preventDefault();
            this._frameView();
            this.render();
        }, { signal });
    }

    clear() {
        this.pause();
        this.motion = null;
        this.render();
        this.onFrame(0, 0, false);
    }

    load(motion) {
        this.pause();
        this.motion = motion;
        this.frame = 0;
        this.boneList = [];
        motion.parents.forEach((p, c) => { if (p >= 0) this.boneList.push([p, c]); });
        this._ensureCanvas();
        this._buildScene();
        this._frameView();
        this.seek(0);
    }

    // What does not change from frame to frame: the floor grid's lines and the pelvis path.
    _buildScene() {
        const m = this.motion;
        const [lo, hi] = this._bounds();
        // lines every half metre over a square a little larger than the motion's footprint
        const size = Math.max(2, Math.ceil(Math.max(hi[0] - lo[0], hi[2] - lo[2]) + 1.5));
        const cx = (lo[0] + hi[0]) / 2, cz = (lo[2] + hi[2]) / 2, half = size / 2;
        this.gridLines = [];
        for (let k = 0; k <= size * 2; k++) {
            const t = -half + k / 2;
            const axis = k === size;   // the two lines through the middle are drawn lighter
            this.gridLines.push({ a: [cx + t, 0, cz - half], b: [cx + t, 0, cz + half], axis });
            this.gridLines.push({ a: [cx - half, 0, cz + t], b: [cx + half, 0, cz + t], axis });
        }
        this.path = new Float32Array(m.frames * 3);
        for (let f = 0; f < m.frames; f++) {
            const k = f * m.joints * 3;
            this.path.set([m.positions[k], 0.002, m.positions[k + 2]], f * 3);
        }
    }

    _bounds() {
        const m = this.motion;
        if (m.bounds) return m.bounds;
        const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
        for (let i = 0; i < m.positions.length; i++) {
            lo[i % 3] = Math.min(lo[i % 3], m.positions[i]);
            hi[i % 3] = Math.max(hi[i % 3], m.positions[i]);
        }
        return [lo, hi];
    }

    _frameView() {
        if (!this.motion) return;
        const [lo, hi] = this._bounds();
        const extent = Math.max(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2], 1.6);
        this.orbit.target = [(lo[0] + hi[0]) / 2, Math.max(0.5, (lo[1] + hi[1]) / 2), (lo[2] + hi[2]) / 2];
        this.orbit.distance = extent * 1.3;
        this.orbit.azimuth = 0.6;
        this.orbit.elevation = 0.25;
    }

    // Sizes the canvas's backing store to the stage (in device pixels) and returns the size in
    // CSS pixels, or null while the stage has no room.
    _fit() {
        const w = this.container.clientWidth, h = this.container.clientHeight;
        if (w < 2 || h < 2) return null;
        const ratio = Math.min(window.devicePixelRatio || 1, 2);
        const bw = Math.round(w * ratio), bh = Math.round(h * ratio);
        if (this.canvas.width !== bw || this.canvas.height !== bh) {
            this.canvas.width = bw;
            this.canvas.height = bh;
        }
        this.ctx.setTransform(bw / w, 0, 0, bh / h, 0, 0);
        return [w, h];
    }

    // Draws segments given in camera space (pairs [a, b]) as one path, each clipped at the near plane.
    _stroke(cam, segments, colour, width) {
        const ctx = this.ctx;
        ctx.strokeStyle = colour;
        ctx.lineWidth = width;
        ctx.beginPath();
        for (const [a, b] of segments) {
            const seg = cam.clip(a, b);
            if (!seg) continue;
            const [p, q] = seg.map((v) => cam.toScreen(v));
            ctx.moveTo(p[0], p[1]);
            ctx.lineTo(q[0], q[1]);
        }
        ctx.stroke();
    }

    _drawFloor(cam) {
        this.ctx.lineCap = "butt";
        for (const axis of [false, true]) {
            const lines = this.gridLines.filter((l) => l.axis === axis);
            this._stroke(cam, lines.map((l) => [cam.toCamera(...l.a), cam.toCamera(...l.b)]),
                         axis ? GRID_AXIS_COLOUR : GRID_COLOUR, 1);
        }
        const p = this.path, segments = [];
        let prev = cam.toCamera(p[0], p[1], p[2]);
        for (let f = 1; f < this.motion.frames; f++) {
            const next = cam.toCamera(p[3 * f], p[3 * f + 1], p[3 * f + 2]);
            segments.push([prev, next]);
            prev = next;
        }
        this._stroke(cam, segments, PATH_COLOUR, 1.5);
    }

    // The skeleton at one frame: bones and joints sorted by depth, drawn far to near.
    _drawPose(cam, frame) {
        const m = this.motion, ctx = this.ctx, p = m.positions;
        const base = frame * m.joints * 3;
        const at = [];
        for (let j = 0; j < m.joints; j++) {
            at.push(cam.toCamera(p[base + 3 * j], p[base + 3 * j + 1], p[base + 3 * j + 2]));
        }
        const items = [];
        for (const [pj, cj] of this.boneList) {
            items.push({ depth: (at[pj][2] + at[cj][2]) / 2, bone: [pj, cj] });
        }
        for (let j = 0; j < m.joints; j++) items.push({ depth: at[j][2], joint: j });
        items.sort((x, y) => y.depth - x.depth);
        ctx.lineCap = "round";
        for (const item of items) {
            if (item.bone) {
                const [pj, cj] = item.bone;
                const depth = Math.max(item.depth, NEAR);
                const colour = SIDE_COLOURS[m.sides[cj]] ?? SIDE_COLOURS.c;
                this._stroke(cam, [[at[pj], at[cj]]], colour, Math.max(1, 2 * BONE_RADIUS * cam.focal / depth));
            } else {
                const j = item.joint;
                if (at[j][2] < NEAR) continue;
                const [x, y] = cam.toScreen(at[j]);
                const radius = JOINT_RADIUS * (j === m.head ? HEAD_SCALE : 1) * cam.focal / at[j][2];
                ctx.fillStyle = SIDE_COLOURS[m.sides[j]] ?? SIDE_COLOURS.c;
                ctx.beginPath();
                ctx.arc(x, y, Math.max(1, radius), 0, 2 * Math.PI);
                ctx.fill();
            }
        }
    }

    render() {
        if (!this.canvas || !this.isShown()) return;
        const size = this._fit();
        if (!size) return;
        const ctx = this.ctx;
        ctx.fillStyle = BACKGROUND;
        ctx.fillRect(0, 0, size[0], size[1]);
        if (!this.motion) return;
        const cam = new Camera(this.orbit, size[0], size[1]);
        this._drawFloor(cam);
        this._drawPose(cam, this.frame);
    }

    seek(frame) {
        if (!this.motion) return;
        const n = this.motion.frames;
        this.frame = ((Math.round(frame) % n) + n) % n;
        this._clock = this.frame / this.motion.fps;
        this.render();
        this.onFrame(this.frame, n, this.playing);
    }

    play() {
        if (!this.motion || this.playing) return;
        this.playing = true;
        let last = performance.now();
        const tick = (now) => {
            if (!this.playing) return;
            this._clock += (now - last) / 1000;
            last = now;
            const n = this.motion.frames;
            this.frame = Math.floor(this._clock * this.motion.fps) % n;
            this._clock %= n / this.motion.fps;
            this.render();  // a no-op while the widget is hidden
            this.onFrame(this.frame, n, true);
            this._raf = requestAnimationFrame(tick);
        };
        this._raf = requestAnimationFrame(tick);
        this.onFrame(this.frame, this.motion.frames, true);
    }

    pause() {
        this.playing = false;
        cancelAnimationFrame(this._raf);
        if (this.motion) this.onFrame(this.frame, this.motion.frames, false);
    }

    toggle() {
        if (this.playing) this.pause(); else this.play();
    }

    isShown() {
        // Hidden DOM widgets (node off screen or collapsed) have display: none.
        return this.container.isConnected && this.container.offsetParent !== null;
    }

    // Stops the animation loop and every listener and gives the canvas's backing store back at
    // once (a zero-sized canvas holds none), not whenever the garbage collector runs; a later
    // load() makes a new canvas.
    dispose() {
        this.pause();
        this.motion = null;
        this._resizeObserver?.disconnect();
        this._listeners?.abort();
        if (this.canvas) {
            this.canvas.width = this.canvas.height = 0;
            this.canvas.remove();
        }
        this.canvas = this.ctx = null;
        this._resizeObserver = this._listeners = null;
    }
}
