// The 3D skeleton viewer behind the MotionRAG preview widget: three.js (vendored,
// web/vendor/three), one WebGL renderer per widget once it has a motion to show,
// bones as instanced cylinders, joints as instanced spheres, a floor grid and the
// pelvis path. No ComfyUI imports here, so the viewer works on any page.
//
// This module and three.js keep the .mjs extension on purpose: ComfyUI loads every *.js file
// under the pack's WEB_DIRECTORY as a front-end extension with the page, and these are libraries
// that motionrag_preview.js imports only when a preview first shows a motion.
import * as THREE from "../vendor/three/three.module.min.mjs";

const FORMAT = "motionrag-preview/1";
const SIDE_COLOURS = { l: 0x4f8ff7, r: 0xef5350, c: 0xd8dce3 };
const BONE_RADIUS = 0.025;
const JOINT_RADIUS = 0.035;
const HEAD_SCALE = 2.6;
const UP = new THREE.Vector3(0, 1, 0);

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

export class MotionViewer {
    constructor(container, { onFrame } = {}) {
        this.container = container;
        this.onFrame = onFrame ?? (() => {});
        this.motion = null;
        this.frame = 0;
        this.playing = false;
        // Orbit state: azimuth from +Z (the motion's facing), elevation, distance.
        this.orbit = { azimuth: 0.6, elevation: 0.25, distance: 4, target: new THREE.Vector3(0, 0.9, 0) };
        // False once creating a WebGL renderer has failed; until then we assume it will work.
        this.available = true;
        this.renderer = null;
        this._clock = 0;
        this._raf = 0;
    }

    // The renderer (and its WebGL context) is made on the first motion, not with the widget:
    // browsers keep only about 16 contexts per page, and a workflow may hold many motion nodes
    // that never run. dispose() gives the context back.
    _ensureRenderer() {
        if (this.renderer || !this.available) return this.available;
        try {
            this.renderer = new THREE.WebGLRenderer({ antialias: true });
        } catch {  // no WebGL here: the widget says so instead of drawing
            this.available = false;
            return false;
        }
        this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
        this.canvas = this.renderer.domElement;
        this.container.prepend(this.canvas);

        this.scene = new THREE.Scene();
        this.scene.background = new THREE.Color(0x202226);
        this.camera = new THREE.PerspectiveCamera(40, 1, 0.05, 500);
        this.scene.add(new THREE.HemisphereLight(0xffffff, 0x404048, 2.2));
        const sun = new THREE.DirectionalLight(0xffffff, 1.6);
        sun.position.set(3, 6, 4);
        this.scene.add(sun);
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

    _clearScene() {
        for (const obj of [this.bones, this.jointMesh, this.grid, this.trail]) {
            if (!obj) continue;
            this.scene.remove(obj);
            obj.geometry?.dispose();
            obj.material?.dispose();
        }
        this.bones = this.jointMesh = this.grid = this.trail = null;
    }

    clear() {
        this.pause();
        this.motion = null;
        if (this.renderer) {
            this._clearScene();
            this.render();
        }
        this.onFrame(0, 0, false);
    }

    load(motion) {
        this.pause();
        this.motion = motion;
        this.frame = 0;
        this.boneList = [];
        motion.parents.forEach((p, c) => { if (p >= 0) this.boneList.push([p, c]); });
        if (this._ensureRenderer()) this._buildScene();
        this._frameView();
        this.seek(0);
    }

    _buildScene() {
        this._clearScene();
        const m = this.motion;
        const mat = new THREE.MeshLambertMaterial();
        this.bones = new THREE.InstancedMesh(new THREE.CylinderGeometry(BONE_RADIUS, BONE_RADIUS, 1, 10),
                                             mat, this.boneList.length);
        this.jointMesh = new THREE.InstancedMesh(new THREE.SphereGeometry(JOINT_RADIUS, 12, 8),
                                                 mat.clone(), m.joints);
        const colour = new THREE.Color();
        this.boneList.forEach(([, c], i) => this.bones.setColorAt(i, colour.setHex(SIDE_COLOURS[m.sides[c]] ?? SIDE_COLOURS.c)));
        for (let j = 0; j < m.joints; j++) {
            this.jointMesh.setColorAt(j, colour.setHex(SIDE_COLOURS[m.sides[j]] ?? SIDE_COLOURS.c));
        }
        this.bones.frustumCulled = this.jointMesh.frustumCulled = false;
        this.scene.add(this.bones, this.jointMesh);

        // Floor grid under the whole motion, and the pelvis path on it.
        const [lo, hi] = this._bounds();
        const size = Math.max(2, Math.ceil(Math.max(hi[0] - lo[0], hi[2] - lo[2]) + 1.5));
        this.grid = new THREE.GridHelper(size, size * 2, 0x555a66, 0x393c44);
        this.grid.position.set((lo[0] + hi[0]) / 2, 0, (lo[2] + hi[2]) / 2);
        const path = new Float32Array(m.frames * 3);
        for (let f = 0; f < m.frames; f++) {
            const k = f * m.joints * 3;
            path.set([m.positions[k], 0.002, m.positions[k + 2]], f * 3);
        }
        const trailGeo = new THREE.BufferGeometry();
        trailGeo.setAttribute("position", new THREE.BufferAttribute(path, 3));
        this.trail = new THREE.Line(trailGeo, new THREE.LineBasicMaterial({ color: 0xc9a227 }));
        this.scene.add(this.grid, this.trail);
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
        this.orbit.target.set((lo[0] + hi[0]) / 2, Math.max(0.5, (lo[1] + hi[1]) / 2), (lo[2] + hi[2]) / 2);
        this.orbit.distance = extent * 1.3;
        this.orbit.azimuth = 0.6;
        this.orbit.elevation = 0.25;
    }

    _pose(frame) {
        const m = this.motion;
        const base = frame * m.joints * 3;
        const p = m.positions;
        const a = new THREE.Vector3(), b = new THREE.Vector3(), dir = new THREE.Vector3();
        const q = new THREE.Quaternion(), s = new THREE.Vector3(), mat = new THREE.Matrix4();
        this.boneList.forEach(([pj, cj], i) => {
            a.fromArray(p, base + pj * 3);
            b.fromArray(p, base + cj * 3);
            dir.subVectors(b, a);
            const len = dir.length();
            q.setFromUnitVectors(UP, len > 1e-9 ? dir.multiplyScalar(1 / len) : UP);
            s.set(1, Math.max(len, 1e-6), 1);
            this.bones.setMatrixAt(i, mat.compose(a.add(b).multiplyScalar(0.5), q, s));
        });
        q.identity();
        s.set(1, 1, 1);
        for (let j = 0; j < m.joints; j++) {
            a.fromArray(p, base + j * 3);
            s.setScalar(j === m.head ? HEAD_SCALE : 1);
            this.jointMesh.setMatrixAt(j, mat.compose(a, q, s));
        }
        this.bones.instanceMatrix.needsUpdate = true;
        this.jointMesh.instanceMatrix.needsUpdate = true;
    }

    render() {
        if (!this.renderer || !this.isShown()) return;
        const w = this.container.clientWidth, h = this.container.clientHeight;
        if (w < 2 || h < 2) return;
        const size = this.renderer.getSize(new THREE.Vector2());
        if (size.x !== w || size.y !== h) {
            this.renderer.setSize(w, h, false);
            this.camera.aspect = w / h;
        }
        const o = this.orbit;
        this.camera.position.set(
            o.target.x + o.distance * Math.cos(o.elevation) * Math.sin(o.azimuth),
            o.target.y + o.distance * Math.sin(o.elevation),
            o.target.z + o.distance * Math.cos(o.elevation) * Math.cos(o.azimuth));
        this.camera.lookAt(o.target);
        this.camera.updateProjectionMatrix();
        if (this.motion) this._pose(this.frame);
        this.renderer.render(this.scene, this.camera);
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

    // Gives the WebGL context back at once (not whenever the garbage collector runs) and
    // stops the animation loop and every listener; a later load() makes a new renderer.
    dispose() {
        this.pause();
        this.motion = null;
        this._resizeObserver?.disconnect();
        this._listeners?.abort();
        if (this.renderer) {
            this._clearScene();
            this.renderer.dispose();
            this.renderer.forceContextLoss();
            this.canvas.remove();
        }
        this.renderer = this.canvas = this.scene = this.camera = null;
        this._resizeObserver = this._listeners = null;
    }
}
