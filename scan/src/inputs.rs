//! The videos named on the command line: files (whatever their extension), folders
//! (searched to any depth for files with a video extension; hidden names skipped) and glob
//! patterns (`'clips/**/*.mp4'`, for shells that do not expand them).

use std::path::{Path, PathBuf};

/// Extensions taken from folders, compared without case.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "3gp", "avi", "flv", "m2ts", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "mts", "mxf", "ogv",
    "ts", "webm", "wmv", "y4m",
];

/// A video to scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// The absolute path (symbolic links resolved).
    pub path: PathBuf,
    /// How the table shows it: as named, or found under a named folder.
    pub shown: String,
}

/// A command-line argument that names no video.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("{0}: no such file or folder")]
    Missing(String),
    #[error("{0}: no file matches this pattern")]
    NoMatch(String),
    #[error("{pattern}: not a valid pattern ({reason})")]
    BadPattern { pattern: String, reason: String },
    #[error("{path}: cannot read the folder ({reason})")]
    Unreadable { path: String, reason: String },
}

pub fn is_video(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The videos `args` name, each once, in the order named (a folder's in path order).
pub fn expand(args: &[String]) -> Result<Vec<Input>, InputError> {
    let mut out: Vec<Input> = Vec::new();
    let mut push = |path: &Path, shown: String| {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        if !out.iter().any(|i| i.path == path) {
            out.push(Input { path, shown });
        }
    };
    for arg in args {
        let p = Path::new(arg);
        if p.is_dir() {
            for f in walk(p)? {
                let shown = f.to_string_lossy().into_owned();
                push(&f, shown);
            }
        } else if p.exists() {
            push(p, arg.clone());
        } else if arg.contains(['*', '?', '[']) {
            let matches = glob::glob(arg).map_err(|e| InputError::BadPattern {
                pattern: arg.clone(),
                reason: e.msg.to_owned(),
            })?;
            let mut any = false;
            for m in matches.flatten() {
                if m.is_dir() {
                    for f in walk(&m)? {
                        let shown = f.to_string_lossy().into_owned();
                        push(&f, shown);
                    }
                } else {
                    let shown = m.to_string_lossy().into_owned();
                    push(&m, shown);
                }
                any = true;
            }
            if !any {
                return Err(InputError::NoMatch(arg.clone()));
            }
        } else {
            return Err(InputError::Missing(arg.clone()));
        }
    }
    Ok(out)
}

/// The video files under `dir`, sorted by path.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| InputError::Unreadable {
            path: d.display().to_string(),
            reason: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if is_video(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"x").unwrap();
        p
    }

    #[test]
    fn folders_give_their_videos_at_any_depth_in_path_order() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "b.mp4");
        touch(d.path(), "a.WEBM");
        touch(d.path(), "sub/c.mkv");
        touch(d.path(), "notes.txt");
        touch(d.path(), ".hidden/d.mp4");
        touch(d.path(), "results.jsonl");
        let got = expand(&[d.path().to_string_lossy().into_owned()]).unwrap();
        let names: Vec<String> = got
            .iter()
            .map(|i| {
                i.path
                    .strip_prefix(d.path().canonicalize().unwrap())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["a.WEBM", "b.mp4", "sub/c.mkv"]);
    }

    #[test]
    fn files_named_are_taken_whatever_their_extension_and_each_video_once() {
        let d = tempfile::tempdir().unwrap();
        let odd = touch(d.path(), "capture.bin");
        let v = touch(d.path(), "v.mp4");
        let args = [
            odd.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
            d.path().to_string_lossy().into_owned(),
        ];
        let got = expand(&args).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].shown, args[0]);
        assert_eq!(got[1].shown, args[1]);
    }

    #[test]
    fn patterns_expand_and_names_that_match_nothing_are_errors() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "x/1.mp4");
        touch(d.path(), "y/2.mp4");
        touch(d.path(), "y/3.mov");
        let pattern = format!("{}/*/*.mp4", d.path().display());
        assert_eq!(expand(&[pattern]).unwrap().len(), 2);
        let none = format!("{}/*.avi", d.path().display());
        assert_eq!(
            expand(std::slice::from_ref(&none)),
            Err(InputError::NoMatch(none))
        );
        let missing = format!("{}/nope.mp4", d.path().display());
        let e = expand(std::slice::from_ref(&missing)).unwrap_err();
        assert_eq!(e.to_string(), format!("{missing}: no such file or folder"));
    }
}
