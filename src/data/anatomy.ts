/**
 * Phantom chest radiograph geometry and renderer: one seeded parametric PA chest (body, lungs, heart, mediastinum,
 * spine, ribs, clavicles, diaphragm domes, gastric bubble) with optional findings, rendered by an additive
 * attenuation model into an 8-bit image and, from the same membership tests, into a class map
 * (0 background, 1 left lung, 2 right lung, 3 heart; the convention of docs/recipe.md §5.2).
 *
 * Coordinates: the image is the unit square, x to the right and y down, pixel (i, j) sampled at its centre
 * ((i + ½)/n, (j + ½)/n). Anatomy is described in a patient frame (u, v) rotated by `angle` about (cx, cy):
 * u is the signed horizontal offset from the midline (u > 0 is the image right = the **patient's left** in a PA
 * view), v is the height (down). Per-side quantities use t = |u| and side 0 = patient right (u < 0),
 * side 1 = patient left (u ≥ 0).
 *
 * Every structure is a membership test on (u, v): the rendered pixels and the mask pixels are the same set.
 * Lungs are the aerated lung fields (the hemithorax inside the ribs, the pleural spaces included, the heart and the
 * mediastinum excluded); the heart is a tilted ellipse; lungs and heart never overlap.
 */
import { uniform } from './random.js';

/** 0 = patient's right (image left in PA), 1 = patient's left (image right). */
export type Side = 0 | 1;
export const SIDE_NAMES = ['right', 'left'] as const;

/** One lung field, in side-local coordinates (t = distance from the midline, v = height). */
export interface LungGeometry {
  /** v of the apex. */
  top: number;
  /** v where the apical cap (half ellipse) meets the lateral and medial walls. */
  capV: number;
  /** Lateral extent (the costophrenic angle lies at t = lmax). */
  lmax: number;
  /** Medial border (mediastinum half width). */
  medial: number;
  /** Aortic knob bulge of the medial border (left side only; 0 on the right). */
  knobAmp: number;
  knobV: number;
  knobW: number;
  /** Dome top (v) and its position (t). */
  domeV: number;
  domeT: number;
  /** v of the costophrenic angle (lateral end of the dome). */
  cpV: number;
  /** v of the medial (cardiophrenic) end of the dome. */
  cardioV: number;
  /** Hilum (origin of the lung markings). */
  hilumT: number;
  hilumV: number;
  /** Phases of the vessel markings. */
  markPhase: number;
  markFreq: number;
}

/** The heart: a tilted ellipse with centre (cu, cv), semi-axes a ≥ b and long-axis angle `tilt` (rad, apex down-left of the patient). */
export interface HeartGeometry {
  cu: number;
  cv: number;
  a: number;
  b: number;
  tilt: number;
}

/** A pleural effusion: fluid below the meniscus v = level − rise·((t − medial)/(lmax − medial))^1.5. */
export interface EffusionGeometry {
  size: 'small' | 'moderate';
  level: number;
  rise: number;
}

/** A pneumothorax: the lung edge pulled `gap` away from the lateral wall and 1.2·gap down from the apex, tapering to 0 near the base. */
export interface PneumothoraxGeometry {
  size: 'small' | 'large';
  gap: number;
}

/** A nodule: a sphere of radius r projected at (u, v), adding `amp` attenuation at its centre. */
export interface NoduleGeometry {
  side: Side;
  u: number;
  v: number;
  r: number;
  amp: number;
}

/** The complete description of one phantom radiograph. */
export interface ChestGeometry {
  cx: number;
  cy: number;
  /** In-plane rotation (rad). */
  angle: number;
  neckHalf: number;
  torsoHalf: number;
  shoulderV: number;
  lungs: [LungGeometry, LungGeometry];
  heart: HeartGeometry;
  spineHalf: number;
  vertebraH: number;
  tracheaHalf: number;
  carinaV: number;
  clavicleV: number;
  clavicleEnd: number;
  ribStart: number;
  ribSpacing: number;
  ribCount: number;
  gastricBubble: { u: number; v: number; rx: number; ry: number } | null;
  effusion: [EffusionGeometry | null, EffusionGeometry | null];
  pneumothorax: [PneumothoraxGeometry | null, PneumothoraxGeometry | null];
  nodules: NoduleGeometry[];
  /** Lung texture: two value-noise grids (TEXTURE_COARSE², TEXTURE_FINE²) over u ∈ [−½, ½], v ∈ [0, 1]. */
  textureCoarse: Float32Array;
  textureFine: Float32Array;
  /** Grey level of zero attenuation, of full attenuation, the gamma of the mapping and the noise amplitude. */
  tone: { lo: number; hi: number; gamma: number; noise: number };
}

/** Patient-level anatomy, shared by the images of one patient. */
export interface PatientAnatomy {
  scale: number;
  lmax: number;
  asym: number;
  top: number;
  height: number;
  medial: number;
  knobAmp: number;
  ctr: number;
  heartAspect: number;
  heartTilt: number;
  heartRightFrac: number;
  domeDrop: number;
  spineHalf: number;
}

/** Which findings to draw into an image. */
export interface FindingRequest {
  cardiomegaly?: boolean;
  effusion?: boolean;
  nodule?: boolean;
  pneumothorax?: boolean;
}

const clamp01 = (x: number): number => (x < 0 ? 0 : x > 1 ? 1 : x);
const smoothstep = (a: number, b: number, x: number): number => {
  const q = clamp01((x - a) / (b - a));
  return q * q * (3 - 2 * q);
};

/** Draws the anatomy of one patient. `female` makes the thorax a little smaller on average. */
export function samplePatientAnatomy(rnd: () => number, female: boolean): PatientAnatomy {
  const scale = female ? uniform(rnd, 0.88, 0.98) : uniform(rnd, 0.95, 1.05);
  return {
    scale,
    lmax: 0.27 * scale * uniform(rnd, 0.95, 1.05),
    asym: uniform(rnd, -0.012, 0.012),
    top: uniform(rnd, 0.13, 0.17),
    height: 0.56 * scale * uniform(rnd, 0.94, 1.06),
    medial: uniform(rnd, 0.045, 0.058),
    knobAmp: uniform(rnd, 0.012, 0.024),
    ctr: uniform(rnd, 0.39, 0.46),
    heartAspect: uniform(rnd, 0.66, 0.76),
    heartTilt: uniform(rnd, 0.6, 0.8),
    heartRightFrac: uniform(rnd, 0.3, 0.36),
    domeDrop: uniform(rnd, 0.008, 0.03),
    spineHalf: uniform(rnd, 0.026, 0.032) * scale,
  };
}

export const TEXTURE_COARSE = 24;
export const TEXTURE_FINE = 72;

/** Smooth (cubic-weighted bilinear) value noise of a G×G grid at (x, y) ∈ [0, 1]², in [0, 1]. */
function valueNoise(grid: Float32Array, G: number, x: number, y: number): number {
  const fx = (x < 0 ? 0 : x > 1 ? 1 : x) * (G - 1);
  const fy = (y < 0 ? 0 : y > 1 ? 1 : y) * (G - 1);
  let ix = Math.floor(fx);
  let iy = Math.floor(fy);
  if (ix > G - 2) ix = G - 2;
  if (iy > G - 2) iy = G - 2;
  let wx = fx - ix;
  let wy = fy - iy;
  wx = wx * wx * (3 - 2 * wx);
  wy = wy * wy * (3 - 2 * wy);
  const k = iy * G + ix;
  const a = grid[k] as number;
  const b = grid[k + 1] as number;
  const c = grid[k + G] as number;
  const d = grid[k + G + 1] as number;
  return a + (b - a) * wx + (c - a) * wy + (a - b - c + d) * wx * wy;
}

/** Cardiothoracic ratio range drawn for cardiomegaly (normal hearts come from `PatientAnatomy.ctr`, 0.39–0.46). */
export const CARDIOMEGALY_CTR: readonly [number, number] = [0.55, 0.66];

/**
 * Draws one image of a patient: pose (centre, rotation up to ±4°, inspiration), tone, and the requested findings.
 * `rnd` drives the pose and tone, `rndFindings` the findings' details (separate streams keep the anatomy of an
 * image independent of which findings it has).
 */
export function sampleChest(p: PatientAnatomy, rnd: () => number, rndFindings: () => number, findings: FindingRequest = {}): ChestGeometry {
  const shiftV = uniform(rnd, -0.02, 0.02);
  const cx = 0.5 + uniform(rnd, -0.03, 0.03);
  const angle = (uniform(rnd, -4, 4) * Math.PI) / 180;
  const inspiration = uniform(rnd, 0.96, 1.04);
  const top = p.top + shiftV;
  const height = p.height * inspiration;
  const lungs = ([0, 1] as const).map((s): LungGeometry => {
    const lmax = p.lmax * (1 + (s === 0 ? p.asym : -p.asym));
    const cpV = top + height + (s === 1 ? p.domeDrop : 0);
    const domeV = cpV - height * uniform(rnd, 0.1, 0.14);
    const domeT = p.medial + uniform(rnd, 0.4, 0.5) * (lmax - p.medial);
    return {
      top: top + uniform(rnd, -0.006, 0.006),
      capV: top + 0.12 * p.scale,
      lmax,
      medial: p.medial * (s === 0 ? 0.9 : 1),
      knobAmp: s === 1 ? p.knobAmp : 0,
      knobV: top + 0.095 * p.scale,
      knobW: 0.022,
      domeV,
      domeT,
      cpV,
      cardioV: domeV + 0.025,
      hilumT: p.medial + 0.025,
      hilumV: top + 0.22 * p.scale,
      markPhase: uniform(rnd, 0, 2 * Math.PI),
      markFreq: Math.round(uniform(rnd, 30, 40)),
    };
  }) as [LungGeometry, LungGeometry];
  const [rl, ll] = lungs;

  // Heart: width = CTR × thoracic width (the outer lung borders), 30–36 % of it right of the midline.
  const ctr = findings.cardiomegaly ? uniform(rndFindings, CARDIOMEGALY_CTR[0], CARDIOMEGALY_CTR[1]) : p.ctr;
  const width = ctr * (rl.lmax + ll.lmax);
  const tilt = p.heartTilt;
  const k = p.heartAspect;
  const cos = Math.cos(tilt);
  const sin = Math.sin(tilt);
  const a = width / 2 / Math.sqrt(cos * cos + k * k * sin * sin);
  const b = k * a;
  const halfH = Math.sqrt(a * a * sin * sin + b * b * cos * cos);
  const heart: HeartGeometry = { cu: width / 2 - p.heartRightFrac * width, cv: ll.domeV + 0.03 - halfH, a, b, tilt };

  const g: ChestGeometry = {
    cx,
    cy: 0.5 + shiftV,
    angle,
    neckHalf: uniform(rnd, 0.07, 0.09) * p.scale,
    torsoHalf: (rl.lmax + ll.lmax) / 2 + uniform(rnd, 0.06, 0.08),
    shoulderV: top - 0.05,
    lungs,
    heart,
    spineHalf: p.spineHalf,
    vertebraH: 0.047 * p.scale,
    tracheaHalf: 0.011 * p.scale,
    carinaV: top + 0.14 * p.scale,
    clavicleV: top + uniform(rnd, 0.02, 0.045),
    clavicleEnd: 0.3 * p.scale,
    ribStart: top + 0.012,
    ribSpacing: height / 9.4,
    ribCount: 10,
    gastricBubble: rnd() < 0.65 ? { u: ll.domeT + 0.035, v: ll.domeV + 0.045, rx: uniform(rnd, 0.022, 0.035), ry: uniform(rnd, 0.014, 0.02) } : null,
    effusion: [null, null],
    pneumothorax: [null, null],
    nodules: [],
    textureCoarse: Float32Array.from({ length: TEXTURE_COARSE * TEXTURE_COARSE }, () => rnd()),
    textureFine: Float32Array.from({ length: TEXTURE_FINE * TEXTURE_FINE }, () => rnd()),
    tone: { lo: uniform(rnd, 4, 18), hi: uniform(rnd, 222, 252), gamma: uniform(rnd, 0.85, 1.15), noise: uniform(rnd, 5, 10) },
  };

  if (findings.effusion) {
    const r = rndFindings();
    const sides: Side[] = r < 0.3 ? [0, 1] : r < 0.65 ? [0] : [1];
    for (const s of sides) {
      const L = lungs[s];
      g.effusion[s] =
        rndFindings() < 0.5
          ? { size: 'small', level: L.domeV + uniform(rndFindings, 0.4, 0.6) * (L.cpV - L.domeV), rise: uniform(rndFindings, 0.07, 0.1) }
          : { size: 'moderate', level: L.domeV - uniform(rndFindings, 0.02, 0.08), rise: uniform(rndFindings, 0.08, 0.12) };
    }
  }
  if (findings.pneumothorax) {
    const s: Side = rndFindings() < 0.5 ? 0 : 1;
    g.pneumothorax[s] = rndFindings() < 0.6 ? { size: 'small', gap: uniform(rndFindings, 0.028, 0.042) } : { size: 'large', gap: uniform(rndFindings, 0.055, 0.08) };
  }
  if (findings.nodule) {
    const r = rndFindings();
    const count = r < 0.7 ? 1 : r < 0.9 ? 2 : 3;
    for (let q = 0; q < count; q++) placeNodule(g, rndFindings);
  }
  return g;
}

/**
 * Puts one nodule, fully inside aerated lung (not in fluid, a pneumothorax, the heart, the hilum or another nodule).
 * When little aerated lung is left (bilateral effusions, a large pneumothorax, a big heart) the radius and the
 * margins are relaxed step by step.
 */
function placeNodule(g: ChestGeometry, rnd: () => number): void {
  for (let attempt = 0; attempt < 1500; attempt++) {
    const stage = attempt < 500 ? 0 : attempt < 1000 ? 1 : 2;
    const side: Side = rnd() < 0.5 ? 0 : 1;
    const L = g.lungs[side];
    const r = stage === 2 ? 0.008 : uniform(rnd, 0.013, 0.026) * (stage === 1 ? 0.6 : 1);
    const t = uniform(rnd, L.medial, L.lmax);
    const v = uniform(rnd, L.top, L.cpV);
    const u = side === 1 ? t : -t;
    const rim = stage === 2 ? 1 : 1.25;
    let ok = true;
    for (let k = 0; k <= 16 && ok; k++) {
      // centre, then 16 points on (or just outside) the rim
      const th = (k * Math.PI) / 8;
      const pu = k === 0 ? u : u + rim * r * Math.cos(th);
      const pv = k === 0 ? v : v + rim * r * Math.sin(th);
      ok = aeratedLung(g, pu, pv) === side;
    }
    for (const o of g.nodules) if (Math.hypot(o.u - u, o.v - v) < (stage === 2 ? 1.2 : 2) * (o.r + r)) ok = false;
    // away from the hilum, where vessels would hide it
    if (Math.hypot(t - L.hilumT, v - L.hilumV) < (stage === 0 ? 0.07 : 0.03) + r) ok = false;
    if (ok) {
      g.nodules.push({ side, u, v, r, amp: uniform(rnd, 0.2, 0.28) });
      return;
    }
  }
  throw new Error('placeNodule: no room for a nodule in the aerated lung (geometry out of range)');
}

// ---------------------------------------------------------------------------------------------------------------
// Membership tests (shared by the renderer, the masks and nodule placement)

/** Lateral wall of a lung at height v (t). */
function lateralWall(L: LungGeometry, v: number): number {
  const q = clamp01((v - L.capV) / (L.cpV - L.capV));
  return L.lmax * (0.82 + 0.18 * Math.sqrt(q));
}

/** Medial border at height v (t), with the aortic knob on the left. */
function medialWall(L: LungGeometry, v: number): number {
  const z = (v - L.knobV) / L.knobW;
  const d = 1 + z * z;
  return L.medial + L.knobAmp / (d * d);
}

/** Diaphragm dome height at t (v): a parabola each side of the dome top, down to the costophrenic and cardiophrenic angles. */
function domeAt(L: LungGeometry, t: number): number {
  if (t >= L.domeT) {
    const q = (t - L.domeT) / (L.lmax - L.domeT);
    return L.domeV + (L.cpV - L.domeV) * q * q;
  }
  const q = (L.domeT - t) / (L.domeT - L.medial);
  return L.domeV + (L.cardioV - L.domeV) * q * q;
}

/**
 * Approximate signed distance to a lung field (negative inside), heart not excluded.
 * `gap` > 0 gives the collapsed lung of a pneumothorax: the lateral wall moved in by gap (tapering to 0 at 85 % of
 * the height) and the apical cap lowered by 1.2·gap.
 */
function lungPhi(L: LungGeometry, t: number, v: number, gap: number): number {
  let lat = lateralWall(L, v);
  let capLat = 0.82 * L.lmax;
  let capTop = L.top;
  if (gap > 0) {
    const q = clamp01((v - L.capV) / (L.cpV - L.capV));
    lat -= gap * Math.sqrt(clamp01(1 - q / 0.85));
    capLat -= gap;
    capTop = Math.min(L.top + 1.2 * gap, L.capV - 0.02);
  }
  const med = medialWall(L, v);
  let phi = t - lat;
  const m = med - t;
  if (m > phi) phi = m;
  const d = v - domeAt(L, t);
  if (d > phi) phi = d;
  if (v < L.capV) {
    const rw = (capLat - L.medial) / 2;
    const ry = L.capV - capTop;
    const du = (t - (L.medial + rw)) / rw;
    const dv = (v - L.capV) / ry;
    const c = (Math.sqrt(du * du + dv * dv) - 1) * (rw < ry ? rw : ry);
    if (c > phi) phi = c;
  }
  return phi;
}

/** Heart ellipse implicit value (< 1 inside). */
function heartE(h: HeartGeometry, cosT: number, sinT: number, u: number, v: number): number {
  const du = u - h.cu;
  const dv = v - h.cv;
  const p = (du * cosT + dv * sinT) / h.a;
  const q = (-du * sinT + dv * cosT) / h.b;
  return p * p + q * q;
}

/** Effusion meniscus height at t. */
function meniscus(L: LungGeometry, e: EffusionGeometry, t: number): number {
  const q = clamp01((t - L.medial) / (L.lmax - L.medial));
  return e.level - e.rise * q * Math.sqrt(q);
}

/** The side whose aerated lung (outside fluid, pneumothorax space and heart, 0.008 from the edges) contains (u, v), else -1. */
export function aeratedLung(g: ChestGeometry, u: number, v: number): Side | -1 {
  const side: Side = u >= 0 ? 1 : 0;
  const t = u >= 0 ? u : -u;
  const L = g.lungs[side];
  const ptx = g.pneumothorax[side];
  if (lungPhi(L, t, v, ptx ? ptx.gap : 0) > -0.008) return -1;
  if (heartE(g.heart, Math.cos(g.heart.tilt), Math.sin(g.heart.tilt), u, v) < 1.15) return -1;
  const e = g.effusion[side];
  if (e && v > meniscus(L, e, t) - 0.025) return -1;
  return side;
}

/** Image (x, y) in the unit square of a patient-frame point (u, v). */
export function toImage(g: ChestGeometry, u: number, v: number): { x: number; y: number } {
  const c = Math.cos(g.angle);
  const s = Math.sin(g.angle);
  const w = v - g.cy;
  return { x: g.cx + c * u - s * w, y: g.cy + s * u + c * w };
}

// ---------------------------------------------------------------------------------------------------------------
// Renderer

/** Class-map values (docs/recipe.md §5.2 painting order). */
export const LABEL_LEFT_LUNG = 1;
export const LABEL_RIGHT_LUNG = 2;
export const LABEL_HEART = 3;

/**
 * Renders a chest geometry at n×n: the 8-bit image and the class map (0 background, 1 left lung, 2 right lung,
 * 3 heart), both row-major. `rnd` supplies the pixel noise (two draws per pixel, in raster order).
 */
export function renderChest(g: ChestGeometry, n: number, rnd: () => number): { pixels: Uint8Array; labels: Uint8Array } {
  const pixels = new Uint8Array(n * n);
  const labels = new Uint8Array(n * n);
  const cosA = Math.cos(g.angle);
  const sinA = Math.sin(g.angle);
  const h = g.heart;
  const cosT = Math.cos(h.tilt);
  const sinT = Math.sin(h.tilt);
  const [rl, ll] = g.lungs;
  const ptxGap = [g.pneumothorax[0]?.gap ?? 0, g.pneumothorax[1]?.gap ?? 0];
  const lmaxAvg = (rl.lmax + ll.lmax) / 2;
  const lineW = Math.max(0.0022, 0.7 / n);
  const edgeW = 0.03;
  const { lo, hi, gamma, noise } = g.tone;
  // Tone curve lo + (hi − lo)·a^gamma, tabulated (a = A / 0.78 clamped to [0, 1]).
  const TONE_STEPS = 4096;
  const tone = new Float32Array(TONE_STEPS + 1);
  for (let k = 0; k <= TONE_STEPS; k++) tone[k] = lo + (hi - lo) * Math.pow(k / TONE_STEPS, gamma);
  const toneScale = TONE_STEPS / 0.78;
  const bubble = g.gastricBubble;
  const nodules = g.nodules;
  const ribHalf = 0.21 * g.ribSpacing;
  const antSpacing = 1.55 * g.ribSpacing;
  const antHalf = 0.3 * g.ribSpacing;
  const antStart = g.ribStart + 0.07;

  for (let j = 0; j < n; j++) {
    const dy = (j + 0.5) / n - g.cy;
    for (let i = 0; i < n; i++) {
      const dx = (i + 0.5) / n - g.cx;
      const u = dx * cosA + dy * sinA;
      const v = g.cy - dx * sinA + dy * cosA;
      const side: Side = u >= 0 ? 1 : 0;
      const t = u >= 0 ? u : -u;
      const L = side === 1 ? ll : rl;
      let label = 0;

      // Body: soft tissue of a cylinder-like torso, narrow at the neck.
      const bodyHalf =
        (g.neckHalf + (g.torsoHalf - g.neckHalf) * Math.sqrt(smoothstep(g.shoulderV - 0.08, g.shoulderV + 0.03, v))) *
        (1 - 0.07 * clamp01((v - 0.78) / 0.22));
      let A = 0;
      if (t < bodyHalf) {
        const q = t / bodyHalf;
        A = 0.4 * Math.sqrt(1 - q * q) + 0.1;

        // Heart (tilted ellipsoid), else lung field.
        const he = heartE(h, cosT, sinT, u, v);
        if (he < 1) {
          label = LABEL_HEART;
          A += 0.02 + 0.05 * Math.sqrt(1 - he);
        } else {
          const phi = lungPhi(L, t, v, 0);
          if (phi < 0) {
            label = side === 1 ? LABEL_LEFT_LUNG : LABEL_RIGHT_LUNG;
            const depth = -phi < edgeW ? Math.sqrt(-phi / edgeW) : 1;
            // Fluid of an effusion replaces air below the meniscus (soft upper edge).
            const e = g.effusion[side];
            const fluid = e ? clamp01((v - meniscus(L, e, t)) / 0.02) : 0;
            A -= 0.34 * depth * (1 - 0.92 * fluid);
            const gap = ptxGap[side] as number;
            const phiC = gap > 0 ? lungPhi(L, t, v, gap) : phi;
            if (phiC < 0) {
              // Aerated lung: parenchyma and vessel markings radiating from the hilum.
              const mdx = t - L.hilumT;
              const mdy = v - L.hilumV;
              const r = Math.sqrt(mdx * mdx + mdy * mdy);
              let c = Math.cos(L.markFreq * Math.atan2(mdy, mdx) + 2.5 * Math.sin(17 * r + L.markPhase) + L.markPhase);
              c = c > 0 ? c * c * c * c : 0;
              const tx = u + 0.5;
              const n1 = valueNoise(g.textureCoarse, TEXTURE_COARSE, tx, v);
              const n2 = valueNoise(g.textureFine, TEXTURE_FINE, tx, v);
              const fade = Math.exp(-r / 0.28);
              const mark = 0.04 + (0.022 * c + 0.04 * n1 * n2 + 0.025 * n2) * fade + 0.008 * n1 + 0.06 * Math.exp(-(r * r) / 0.0015);
              A += mark * (1 + 6 * gap) * (1 - fluid);
            } else {
              // Pneumothorax space: air only, no markings; the visceral pleural line at the collapsed lung edge.
              A -= (0.015 + 0.2 * (1 - depth)) * (1 - fluid);
            }
            if (gap > 0 && phi < -2 * lineW && phiC < lineW && phiC > -lineW) A += 0.07 * (1 - fluid);
          }
        }

        // Mediastinum above the heart (great vessels): denser than the chest wall.
        if (label === 0 && v > g.shoulderV && v < h.cv) {
          const mw = medialWall(L, v) + 0.012;
          if (t < mw) A += 0.05 * (1 - (t / mw) * (t / mw));
        }

        // Gastric bubble under the left dome.
        if (bubble && label === 0) {
          const bu = (u - bubble.u) / bubble.rx;
          const bv = (v - bubble.v) / bubble.ry;
          const be = bu * bu + bv * bv;
          if (be < 1) A -= 0.12 * Math.sqrt(1 - be);
        }

        // Spine: vertebral bodies with darker disc spaces, the trachea's air column above the carina.
        if (t < g.spineHalf) {
          const q2 = t / g.spineHalf;
          const ph = (v - g.cy) / g.vertebraH;
          const disc = ph - Math.floor(ph) < 0.18 ? 0.55 : 1;
          A += 0.095 * disc * Math.sqrt(1 - q2 * q2);
        }
        if (t < g.tracheaHalf && v < g.carinaV) A -= 0.07;

        // Clavicles: S-shaped, medial end at the apex, lateral end rising towards the shoulder.
        const tEnd = bodyHalf - 0.012;
        if (t > 0.028 && t < g.clavicleEnd && t < tEnd) {
          const tc = t - 0.03;
          const d = v - (g.clavicleV - 0.25 * tc + 0.35 * tc * tc);
          const ch = 0.0105;
          if (d > -ch && d < ch) {
            const q3 = d / ch;
            A += 0.14 * Math.sqrt(1 - q3 * q3);
          }
        }

        // Posterior ribs: from the spine, rising a little then curving down to the lateral chest wall, inside the body.
        const ribEnd = lmaxAvg + 0.03 < tEnd ? lmaxAvg + 0.03 : tEnd;
        if (t > g.spineHalf * 0.8 && t < ribEnd) {
          const tau = t / lmaxAvg;
          const f = lmaxAvg * (-0.5 * tau + 0.85 * tau * tau);
          const p = (v - g.ribStart - f) / g.ribSpacing;
          const k = Math.round(p);
          if (k >= 0 && k < g.ribCount) {
            const d = ((p - k) * g.ribSpacing) / ribHalf;
            if (d > -1 && d < 1) A += 0.085 * Math.sqrt(1 - d * d) * (0.75 + 0.25 * d * d);
          }
          // Anterior ribs: fainter, running down and medially from the lateral wall.
          if (t > 0.07) {
            const pa = (v - antStart - 0.42 * (lmaxAvg - t)) / antSpacing;
            const ka = Math.round(pa);
            if (ka >= 0 && ka < 6) {
              const d = ((pa - ka) * antSpacing) / antHalf;
              if (d > -1 && d < 1) A += 0.03 * Math.sqrt(1 - d * d);
            }
          }
        }

        // Nodules: projected spheres.
        for (let k = 0; k < nodules.length; k++) {
          const nd = nodules[k] as NoduleGeometry;
          const du = u - nd.u;
          const dv = v - nd.v;
          const d2 = (du * du + dv * dv) / (nd.r * nd.r);
          if (d2 < 1) A += nd.amp * Math.sqrt(1 - d2);
        }
      }

      const ti = A <= 0 ? 0 : A >= 0.78 ? TONE_STEPS : (A * toneScale + 0.5) | 0;
      const val = (tone[ti] as number) + (rnd() + rnd() - 1) * noise;
      pixels[j * n + i] = val <= 0 ? 0 : val >= 255 ? 255 : (val + 0.5) | 0;
      labels[j * n + i] = label;
    }
  }
  return { pixels, labels };
}
