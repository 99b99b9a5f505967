//! A small labelled set of face crops made from the sample faces, for tests and for the
//! demo detector: real crops, and manipulations our code makes in the spirit of each type.
//!
//! - REAL: the face as photographed.
//! - FS (swap): the inner face of another person, aligned on the five landmarks and blended
//!   in through a feathered ellipse.
//! - FR (reenactment): the same person with the mouth and eyes moved by a smooth warp.
//! - EFS (synthesis): the whole crop replaced by a morph of two people, smoothed and
//!   upsampled from half resolution (the checkerboard of generators).
//! - FE (editing): the same person with skin and lips recoloured inside the face.
//!
//! Every crop goes through [`CropRecipe`] with a jittered box, as a detected face would.
//! These are stand-ins with visible artifacts, not deepfakes: a model trained on them
//! recognises these manipulations only.

use std::path::{Path, PathBuf};

use sd2_models::crop::CropRecipe;
use sd2_models::image::{ImageError, RgbImage};
use sd2_models::mtcnn::{Face, MtcnnError};
use sd2_models::runtime::RuntimeError;
use sd2_models::taxonomy::DeepfakeType;

use super::manifest::{Row, Split};
use super::rng::Rng;

/// A photographed face with what we know of it.
#[derive(Clone, Debug)]
pub struct Person {
    pub frame: usize,
    pub face: Face,
    pub description: String,
}

/// A source photo and its scene description.
pub struct Photo {
    pub image: RgbImage,
    pub environment: String,
}

type Affine = [f32; 6]; // x' = a x + b y + c, y' = d x + e y + f

/// The similarity transform taking `from` to `to` in the least-squares sense.
fn similarity(from: &[[f32; 2]; 5], to: &[[f32; 2]; 5]) -> Affine {
    let mean = |p: &[[f32; 2]; 5]| {
        let s = p.iter().fold([0.0, 0.0], |a, q| [a[0] + q[0], a[1] + q[1]]);
        [s[0] / 5.0, s[1] / 5.0]
    };
    let (mf, mt) = (mean(from), mean(to));
    let (mut sxx, mut sxy, mut norm) = (0.0, 0.0, 0.0);
    for (p, q) in from.iter().zip(to) {
        let (px, py) = (p[0] - mf[0], p[1] - mf[1]);
        let (qx, qy) = (q[0] - mt[0], q[1] - mt[1]);
        sxx += px * qx + py * qy;
        sxy += px * qy - py * qx;
        norm += px * px + py * py;
    }
    let (a, b) = (sxx / norm.max(1e-6), sxy / norm.max(1e-6));
    [
        a,
        -b,
        mt[0] - a * mf[0] + b * mf[1],
        b,
        a,
        mt[1] - b * mf[0] - a * mf[1],
    ]
}

fn invert(t: &Affine) -> Affine {
    let det = t[0] * t[4] - t[1] * t[3];
    let (a, b, d, e) = (t[4] / det, -t[1] / det, -t[3] / det, t[0] / det);
    [a, b, -(a * t[2] + b * t[5]), d, e, -(d * t[2] + e * t[5])]
}

fn apply(t: &Affine, x: f32, y: f32) -> (f32, f32) {
    (t[0] * x + t[1] * y + t[2], t[3] * x + t[4] * y + t[5])
}

/// Weight in [0, 1] of the inner-face ellipse around the landmarks, `feather` of its size soft.
fn face_mask(face: &Face, feather: f32) -> impl Fn(f32, f32) -> f32 {
    let l = face.landmarks;
    let cx = l.iter().map(|p| p[0]).sum::<f32>() / 5.0;
    let cy = l.iter().map(|p| p[1]).sum::<f32>() / 5.0;
    let eye = ((l[1][0] - l[0][0]).powi(2) + (l[1][1] - l[0][1]).powi(2))
        .sqrt()
        .max(4.0);
    let (ax, ay) = (eye * 1.25, eye * 1.55);
    let cy = cy + eye * 0.1;
    move |x: f32, y: f32| {
        let r = (((x - cx) / ax).powi(2) + ((y - cy) / ay).powi(2)).sqrt();
        ((1.0 - r) / feather.max(1e-3)).clamp(0.0, 1.0)
    }
}

/// The pixels around `face` (its box grown by half) where an edit may land.
fn region(face: &Face, img: &RgbImage) -> (usize, usize, usize, usize) {
    let b = face.bbox;
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let x0 = (b[0] - w * 0.5).max(0.0) as usize;
    let y0 = (b[1] - h * 0.5).max(0.0) as usize;
    let x1 = ((b[2] + w * 0.5) as usize).min(img.width);
    let y1 = ((b[3] + h * 0.5) as usize).min(img.height);
    (x0, y0, x1, y1)
}

/// FS: `donor`'s inner face on `target`'s frame (`rng` picks the feathering and colour match).
pub fn swap(
    frame: &RgbImage,
    target: &Face,
    donor_frame: &RgbImage,
    donor: &Face,
    rng: &mut Rng,
) -> RgbImage {
    let to_donor = invert(&similarity(&donor.landmarks, &target.landmarks));
    let mask = face_mask(target, rng.range(0.15, 0.4));
    let colour_match = rng.range(0.0, 0.6);
    let mut out = frame.clone();
    let (x0, y0, x1, y1) = region(target, frame);
    // Mean colours inside the mask, to move the donor part of the way to the target's skin.
    let (mut mt, mut md, mut n) = ([0f32; 3], [0f32; 3], 0f32);
    for y in y0..y1 {
        for x in x0..x1 {
            if mask(x as f32, y as f32) > 0.5 {
                let (sx, sy) = apply(&to_donor, x as f32, y as f32);
                let d = donor_frame.sample_bilinear(sx, sy);
                for c in 0..3 {
                    mt[c] += frame.data[(y * frame.width + x) * 3 + c] as f32;
                    md[c] += d[c];
                }
                n += 1.0;
            }
        }
    }
    let shift: [f32; 3] = std::array::from_fn(|c| (mt[c] - md[c]) / n.max(1.0) * colour_match);
    for y in y0..y1 {
        for x in x0..x1 {
            let a = mask(x as f32, y as f32);
            if a <= 0.0 {
                continue;
            }
            let (sx, sy) = apply(&to_donor, x as f32, y as f32);
            let d = donor_frame.sample_bilinear(sx, sy);
            for c in 0..3 {
                let i = (y * frame.width + x) * 3 + c;
                out.data[i] = (frame.data[i] as f32 * (1.0 - a) + (d[c] + shift[c]) * a)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// FR: the mouth opened or closed and the eyes narrowed by a smooth local warp.
fn reenact(frame: &RgbImage, face: &Face, rng: &mut Rng) -> RgbImage {
    let l = face.landmarks;
    let mouth = [(l[3][0] + l[4][0]) / 2.0, (l[3][1] + l[4][1]) / 2.0];
    let eyes = [(l[0][0] + l[1][0]) / 2.0, (l[0][1] + l[1][1]) / 2.0];
    let eye = ((l[1][0] - l[0][0]).powi(2) + (l[1][1] - l[0][1]).powi(2))
        .sqrt()
        .max(4.0);
    let (open, squint, turn) = (
        rng.range(0.2, 0.45),
        rng.range(0.1, 0.3),
        rng.range(-0.12, 0.12),
    );
    let radius = eye * 0.9;
    let mut out = frame.clone();
    let (x0, y0, x1, y1) = region(face, frame);
    for y in y0..y1 {
        for x in x0..x1 {
            let (fx, fy) = (x as f32, y as f32);
            let bump = |c: [f32; 2]| {
                (-(((fx - c[0]).powi(2) + (fy - c[1]).powi(2)) / (radius * radius))).exp()
            };
            let (wm, we) = (bump(mouth), bump(eyes));
            // Inverse map: where each output pixel reads from.
            let sx = fx - turn * eye * (wm + we);
            let sy = fy - open * (fy - mouth[1]) * wm + squint * (fy - eyes[1]) * we;
            let p = frame.sample_bilinear(sx, sy);
            let i = (y * frame.width + x) * 3;
            for (o, v) in out.data[i..i + 3].iter_mut().zip(p) {
                *o = v.round() as u8;
            }
        }
    }
    out
}

/// EFS: a morph of two crops, smoothed and upsampled from half resolution.
fn synthesise(a: &RgbImage, b: &RgbImage, rng: &mut Rng) -> RgbImage {
    let n = a.width;
    let mix = rng.range(0.35, 0.65);
    let half = n / 2;
    let mut small = vec![0f32; half * half * 3];
    for y in 0..half {
        for x in 0..half {
            for c in 0..3 {
                let mut s = 0.0;
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let i = ((2 * y + dy) * n + 2 * x + dx) * 3 + c;
                    s += a.data[i] as f32 * mix + b.data[i] as f32 * (1.0 - mix);
                }
                small[(y * half + x) * 3 + c] = s / 4.0;
            }
        }
    }
    let mut data = vec![0u8; n * n * 3];
    for y in 0..n {
        for x in 0..n {
            for c in 0..3 {
                let v = small[((y / 2).min(half - 1) * half + (x / 2).min(half - 1)) * 3 + c];
                // A faint periodic pattern, as transposed convolutions leave.
                let pattern = if (x + y) % 2 == 0 { 3.0 } else { -3.0 };
                data[(y * n + x) * 3 + c] = (v + pattern).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::new(n, n, data).expect("n × n")
}

/// FE: skin tinted and lips recoloured inside the face.
fn edit(frame: &RgbImage, face: &Face, rng: &mut Rng) -> RgbImage {
    let tint = [
        rng.range(-40.0, 40.0),
        rng.range(-40.0, 40.0),
        rng.range(-40.0, 40.0),
    ];
    let saturation = rng.range(1.2, 1.6);
    let mask = face_mask(face, 0.5);
    let l = face.landmarks;
    let lips = [(l[3][0] + l[4][0]) / 2.0, (l[3][1] + l[4][1]) / 2.0];
    let lip_r = ((l[4][0] - l[3][0]).abs() * 0.7).max(2.0);
    let mut out = frame.clone();
    let (x0, y0, x1, y1) = region(face, frame);
    for y in y0..y1 {
        for x in x0..x1 {
            let a = mask(x as f32, y as f32);
            let lip = (1.0
                - (((x as f32 - lips[0]) / lip_r).powi(2)
                    + ((y as f32 - lips[1]) / (lip_r * 0.5)).powi(2))
                .sqrt())
            .clamp(0.0, 1.0);
            if a <= 0.0 && lip <= 0.0 {
                continue;
            }
            let i = (y * frame.width + x) * 3;
            let px: [f32; 3] = std::array::from_fn(|c| frame.data[i + c] as f32);
            let grey = (px[0] + px[1] + px[2]) / 3.0;
            for c in 0..3 {
                let saturated = grey + (px[c] - grey) * saturation + tint[c];
                let lipped = if c == 0 {
                    saturated + 60.0 * lip
                } else {
                    saturated - 30.0 * lip
                };
                out.data[i + c] = (px[c] * (1.0 - a) + lipped * a.max(lip))
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// The face box shifted and scaled a little, as detections of the same face vary.
fn jitter(face: &Face, rng: &mut Rng) -> [f32; 4] {
    let b = face.bbox;
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let (dx, dy) = (rng.range(-0.06, 0.06) * w, rng.range(-0.06, 0.06) * h);
    let s = rng.range(0.92, 1.08);
    let (cx, cy) = ((b[0] + b[2]) / 2.0 + dx, (b[1] + b[3]) / 2.0 + dy);
    [
        cx - w * s / 2.0,
        cy - h * s / 2.0,
        cx + w * s / 2.0,
        cy + h * s / 2.0,
    ]
}

/// One labelled crop: `(type, crop, whose face it shows)`.
pub fn make_sample(
    kind: DeepfakeType,
    photos: &[Photo],
    people: &[Person],
    recipe: &CropRecipe,
    rng: &mut Rng,
) -> (RgbImage, usize) {
    let who = rng.below(people.len());
    let p = &people[who];
    let frame = &photos[p.frame].image;
    let other = (who + 1 + rng.below(people.len() - 1)) % people.len();
    let bbox = jitter(&p.face, rng);
    let (crop, shown) = match kind {
        DeepfakeType::Real => (recipe.crop(frame.view(), bbox), who),
        DeepfakeType::FaceSwap => {
            let d = &people[other];
            let swapped = swap(frame, &p.face, &photos[d.frame].image, &d.face, rng);
            (recipe.crop(swapped.view(), bbox), other)
        }
        DeepfakeType::FaceReenactment => {
            (recipe.crop(reenact(frame, &p.face, rng).view(), bbox), who)
        }
        DeepfakeType::EntireFaceSynthesis => {
            let d = &people[other];
            let a = recipe.crop(frame.view(), bbox);
            let b = recipe.crop(photos[d.frame].image.view(), jitter(&d.face, rng));
            (synthesise(&a, &b, rng), who)
        }
        DeepfakeType::FaceEditing => (recipe.crop(edit(frame, &p.face, rng).view(), bbox), who),
    };
    (crop, shown)
}

/// How many crops of each kind.
#[derive(Clone, Copy, Debug)]
pub struct SetSize {
    /// Crops of each manipulation type.
    pub per_type: usize,
    /// REAL crops per manipulation type's count: 1 balances the five types, 4 makes real
    /// and fake faces equally common.
    pub real_factor: usize,
}

/// Writes the crops under `out/images/` and `out/manifest.jsonl`; a quarter of each type
/// is the test split.
pub fn write_set(
    out: &Path,
    photos: &[Photo],
    people: &[Person],
    recipe: &CropRecipe,
    size: SetSize,
    seed: u64,
) -> std::io::Result<PathBuf> {
    assert!(people.len() >= 2, "a swap needs two people");
    let mut lines = String::new();
    for kind in DeepfakeType::ALL {
        let dir = out.join("images").join(kind.code());
        std::fs::create_dir_all(&dir)?;
        let count = if kind == DeepfakeType::Real {
            size.per_type * size.real_factor.max(1)
        } else {
            size.per_type
        };
        for i in 0..count {
            let mut rng = Rng::keyed(seed, &[kind.index() as u64, i as u64]);
            let (crop, who) = make_sample(kind, photos, people, recipe, &mut rng);
            let rel = format!("images/{}/{i:05}.png", kind.code());
            crop.save_png(&out.join(&rel))
                .map_err(std::io::Error::other)?;
            let split = if i % 4 == 3 {
                Split::Test
            } else {
                Split::Train
            };
            let row = Row {
                image: rel,
                kind,
                dataset: "sd2-synthetic".into(),
                method: format!("synthetic-{}", kind.code().to_lowercase()),
                split,
                group: format!("{}-{i:05}", kind.code()),
                face: Some(people[who].description.clone()),
                environment: Some(photos[people[who].frame].environment.clone()),
            };
            lines.push_str(&serde_json::to_string(&row).expect("rows serialise"));
            lines.push('\n');
        }
    }
    let manifest = out.join("manifest.jsonl");
    sd2_models::atomic_write::write_atomic(&manifest, lines.as_bytes())?;
    Ok(manifest)
}

/// Descriptions of the people in `t1.jpg`, left to right, and of its scene.
const GROUP: [&str; 6] = [
    "A young woman with long straight light brown hair and a gentle smile, looking down at her playing cards.",
    "A woman with dark hair pinned up, red lipstick and a black lace dress, leaning forward with a slight smile.",
    "A man with short dark hair and a broad smile, wearing a grey short-sleeved shirt.",
    "A young man with short dark hair laughing widely, wearing a red shirt.",
    "A tall man with dark swept-back hair and a grey shirt, looking to the side with a confident expression.",
    "A woman with straight blonde hair and a soft smile, wearing a black top.",
];
const GROUP_SCENE: &str = "A warm indoor room with a wooden poker table covered in colourful chips, glasses and cards, lit by a hanging lamp.";
const ASTRONAUT: &str =
    "A smiling middle-aged woman with short dark brown hair, wearing an orange space suit.";
const ASTRONAUT_SCENE: &str =
    "A studio portrait in front of an American flag and a model of the space shuttle, evenly lit.";

/// Why the faces of the sample photos could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SamplePhotosError {
    #[error(transparent)]
    Mtcnn(#[from] RuntimeError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Detection(#[from] MtcnnError),
    #[error("found {0} faces in the sample photos; at least two are needed")]
    TooFewFaces(usize),
}

/// The sample photos (`astronaut.png`, `t1.jpg`) and the faces MTCNN finds in them, with
/// descriptions written for them.
pub fn sample_photos(
    samples: &Path,
    mtcnn_dir: &Path,
) -> Result<(Vec<Photo>, Vec<Person>), SamplePhotosError> {
    use sd2_models::mtcnn::{Mtcnn, MtcnnConfig};
    use sd2_models::runtime::{Device, SessionConfig};
    let mut mtcnn = Mtcnn::load(
        mtcnn_dir,
        Device::Cpu,
        SessionConfig::default(),
        MtcnnConfig::default(),
    )?;
    let mut photos = Vec::new();
    let mut people = Vec::new();
    for (file, scene, descriptions) in [
        ("astronaut.png", ASTRONAUT_SCENE, &[ASTRONAUT][..]),
        ("t1.jpg", GROUP_SCENE, &GROUP[..]),
    ] {
        let image = RgbImage::open(&samples.join(file))?;
        let mut faces = mtcnn.detect(image.view())?;
        faces.sort_by(|a, b| (a.bbox[0] + a.bbox[2]).total_cmp(&(b.bbox[0] + b.bbox[2])));
        for (k, face) in faces.into_iter().enumerate() {
            people.push(Person {
                frame: photos.len(),
                face,
                description: descriptions
                    .get(k)
                    .copied()
                    .unwrap_or("A person's face.")
                    .to_owned(),
            });
        }
        photos.push(Photo {
            image,
            environment: scene.to_owned(),
        });
    }
    if people.len() < 2 {
        return Err(SamplePhotosError::TooFewFaces(people.len()));
    }
    Ok((photos, people))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_recovers_a_known_transform() {
        let from = [[0.0, 0.0], [10.0, 0.0], [5.0, 5.0], [2.0, 9.0], [8.0, 9.0]];
        let t: Affine = [0.8, -0.6, 3.0, 0.6, 0.8, -2.0];
        let to = from.map(|p| {
            let (x, y) = apply(&t, p[0], p[1]);
            [x, y]
        });
        let got = similarity(&from, &to);
        for (g, w) in got.iter().zip(&t) {
            assert!((g - w).abs() < 1e-4, "{got:?}");
        }
        let back = invert(&got);
        let (x, y) = apply(&back, to[2][0], to[2][1]);
        assert!((x - 5.0).abs() < 1e-3 && (y - 5.0).abs() < 1e-3);
    }
}
