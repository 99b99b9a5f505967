//! The five deepfake types, in the order used everywhere (paper §3.1, DESIGN.md).

use std::fmt;
use std::str::FromStr;

/// REAL and the four manipulation types. The discriminant is the class index.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum DeepfakeType {
    #[serde(rename = "REAL")]
    Real = 0,
    /// Face swapping.
    #[serde(rename = "FS")]
    FaceSwap = 1,
    /// Face reenactment.
    #[serde(rename = "FR")]
    FaceReenactment = 2,
    /// Entire face synthesis.
    #[serde(rename = "EFS")]
    EntireFaceSynthesis = 3,
    /// Face editing.
    #[serde(rename = "FE")]
    FaceEditing = 4,
}

impl DeepfakeType {
    pub const ALL: [DeepfakeType; 5] = [
        DeepfakeType::Real,
        DeepfakeType::FaceSwap,
        DeepfakeType::FaceReenactment,
        DeepfakeType::EntireFaceSynthesis,
        DeepfakeType::FaceEditing,
    ];
    pub const COUNT: usize = 5;

    /// Short name: `REAL`, `FS`, `FR`, `EFS`, `FE`.
    pub fn code(self) -> &'static str {
        match self {
            DeepfakeType::Real => "REAL",
            DeepfakeType::FaceSwap => "FS",
            DeepfakeType::FaceReenactment => "FR",
            DeepfakeType::EntireFaceSynthesis => "EFS",
            DeepfakeType::FaceEditing => "FE",
        }
    }

    /// Long name, as the paper writes it.
    pub fn description(self) -> &'static str {
        match self {
            DeepfakeType::Real => "real",
            DeepfakeType::FaceSwap => "face swapping",
            DeepfakeType::FaceReenactment => "face reenactment",
            DeepfakeType::EntireFaceSynthesis => "entire face synthesis",
            DeepfakeType::FaceEditing => "face editing",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Self> {
        Self::ALL.get(i).copied()
    }

    pub fn is_fake(self) -> bool {
        self != DeepfakeType::Real
    }
}

impl fmt::Display for DeepfakeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A type name that is none of [`DeepfakeType::ALL`]'s codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown deepfake type `{0}`: expected one of REAL, FS, FR, EFS, FE")]
pub struct UnknownType(pub String);

impl FromStr for DeepfakeType {
    type Err = UnknownType;
    fn from_str(s: &str) -> Result<Self, UnknownType> {
        Self::ALL
            .into_iter()
            .find(|t| t.code().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_in_class_order() {
        for (i, t) in DeepfakeType::ALL.into_iter().enumerate() {
            assert_eq!(t.index(), i);
            assert_eq!(t.code().parse::<DeepfakeType>().unwrap(), t);
            assert_eq!(DeepfakeType::from_index(i), Some(t));
        }
        assert!("deepfake".parse::<DeepfakeType>().is_err());
        assert!(!DeepfakeType::Real.is_fake() && DeepfakeType::FaceEditing.is_fake());
    }
}
