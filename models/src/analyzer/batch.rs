//! The faces of several planned frames, cropped with the model's recipe and classified in
//! one hand-over to the shared model.

use crate::classifier::Verdict;
use crate::image::RgbView;

use super::AnalysisError;
use super::service::SharedModel;
use super::stream::Plan;

/// Crops of the due faces of consecutive frames, for one hand-over to the model.
pub struct Batch<'m> {
    model: &'m SharedModel,
    inputs: Vec<f32>,
    /// Per frame added, per face: its row in `inputs` when it was cropped.
    rows: Vec<Vec<Option<usize>>>,
}

/// What a batch gave back.
#[derive(Debug)]
pub struct BatchVerdicts {
    /// Per frame added, per face of its plan: the model's verdict, when the face was due and
    /// classified.
    pub frames: Vec<Vec<Option<Verdict>>>,
    /// Why no face was classified, when the model failed.
    pub error: Option<AnalysisError>,
    /// Set when CUDA graphs failed during this batch and were turned off: why.
    pub graphs_off: Option<String>,
}

impl<'m> Batch<'m> {
    pub fn new(model: &'m SharedModel) -> Self {
        Batch {
            model,
            inputs: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Adds a frame: its due faces are cropped from `image` as the model's recipe says.
    pub fn add(&mut self, plan: &Plan, image: RgbView<'_>) {
        let per = self.model.input_len();
        let recipe = *self.model.recipe();
        let mut rows = vec![None; plan.faces.len()];
        for (slot, face) in rows.iter_mut().zip(&plan.faces) {
            if face.due {
                let start = self.inputs.len();
                self.inputs.resize(start + per, 0.0);
                recipe.input_for(image, face.bbox, &mut self.inputs[start..]);
                *slot = Some(start / per);
            }
        }
        self.rows.push(rows);
    }

    /// Adds a frame none of whose faces is cropped: none is due, or its image could not
    /// be read (its due faces then go without a verdict).
    pub fn add_uncropped(&mut self, plan: &Plan) {
        self.rows.push(vec![None; plan.faces.len()]);
    }

    /// Faces that go to the model.
    pub fn faces(&self) -> usize {
        self.inputs.len() / self.model.input_len().max(1)
    }

    /// Classifies the faces on the shared model (with other streams' faces waiting at the
    /// same time), waiting for the verdicts.
    pub fn classify(self) -> BatchVerdicts {
        let Batch {
            model,
            inputs,
            rows,
        } = self;
        let (verdicts, error, graphs_off) = match model.classify(inputs) {
            Ok(c) => (c.verdicts, None, c.graphs_off),
            Err(e) => (Vec::new(), Some(e), None),
        };
        let frames = rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|i| i.and_then(|i| verdicts.get(i).copied()))
                    .collect()
            })
            .collect();
        BatchVerdicts {
            frames,
            error,
            graphs_off,
        }
    }
}
