//! `stop_sequences`, enforced by cliproxy on the answer's text.
//!
//! Chat completions have `stop`, but an OpenAI-compatible upstream strips the matched string,
//! says `finish_reason: "stop"` for a natural end too, and does not say which sequence
//! matched; OpenAI also takes at most 4. So the sequences are not sent upstream: cliproxy
//! looks for them in the text itself, any number of them, which tells exactly whether and
//! which one matched. The text ends where the first complete sequence begins (the sequence
//! itself is not part of it, as with Anthropic) and the turn ends with `stop_reason:
//! "stop_sequence"` and `stop_sequence` set to it; what the model generated after it (more
//! text, tool calls) is dropped. Thinking and tool-call arguments are not searched, as
//! Anthropic applies stop sequences to the text.
//!
//! When two sequences complete at the same point, the longer one (the one that began first)
//! is the match; otherwise the one that completes first wins, as it would when generating.

/// The request's stop sequences (empty strings left out: they cannot end anything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopSequences(Vec<String>);

/// A stop sequence found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Match<'a> {
    /// Where the sequence begins: the text is cut here.
    pub(crate) at: usize,
    pub(crate) sequence: &'a str,
}

impl StopSequences {
    /// The request's `stop_sequences`, without the empty ones.
    pub fn new(sequences: Vec<String>) -> Self {
        Self(
            sequences
                .into_iter()
                .filter(|sequence| !sequence.is_empty())
                .collect(),
        )
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first sequence to complete in `text`, if any.
    pub(crate) fn find<'a>(&'a self, text: &str) -> Option<Match<'a>> {
        self.0
            .iter()
            .filter_map(|sequence| {
                text.find(sequence.as_str()).map(|at| Match {
                    at,
                    sequence: sequence.as_str(),
                })
            })
            .min_by_key(|found| (found.at + found.sequence.len(), found.at))
    }

    /// The length of the longest end of `text` that is the start of a sequence (but not a
    /// whole one): text that must wait for what follows before it can be sent.
    fn pending_len(&self, text: &str) -> usize {
        let mut longest = 0;
        for sequence in &self.0 {
            for (end, _) in sequence.char_indices().skip(1) {
                if end > longest && text.ends_with(&sequence[..end]) {
                    longest = end;
                }
            }
        }
        longest
    }
}

/// What [`StopScanner::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scanned<'a> {
    /// Text that can be sent now (possibly empty: it may be held back).
    Text(String),
    /// A sequence matched: the text before it, then the end of the turn.
    Stop { text: String, sequence: &'a str },
}

/// Finds stop sequences in streamed text, holding back the end of the text that may be the
/// beginning of one until the next delta says whether it is.
#[derive(Debug, Default)]
pub(crate) struct StopScanner {
    sequences: StopSequences,
    held: String,
}

impl StopScanner {
    pub fn new(sequences: StopSequences) -> Self {
        Self {
            sequences,
            held: String::new(),
        }
    }

    /// Whether there is anything to look for; without, text can be sent as it comes.
    pub(crate) fn is_active(&self) -> bool {
        !self.sequences.is_empty()
    }

    /// The next text delta.
    pub(crate) fn push(&mut self, delta: &str) -> Scanned<'_> {
        self.held.push_str(delta);
        if let Some(found) = self.sequences.find(&self.held) {
            let mut text = std::mem::take(&mut self.held);
            text.truncate(found.at);
            return Scanned::Stop {
                text,
                sequence: found.sequence,
            };
        }
        let keep = self.sequences.pending_len(&self.held);
        let held = self.held.split_off(self.held.len() - keep);
        Scanned::Text(std::mem::replace(&mut self.held, held))
    }

    /// The text held back, at the end of the text (another kind of content, or the end).
    pub(crate) fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(sequences: &[&str]) -> StopSequences {
        StopSequences::new(sequences.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn the_first_sequence_to_complete_is_the_match() {
        let sequences = stops(&["END", "ab", "b", ""]);
        assert_eq!(sequences.find("no stop here"), None);
        assert_eq!(
            sequences.find("1 ab 2 END"),
            Some(Match {
                at: 2,
                sequence: "ab"
            })
        );
        assert_eq!(
            sequences.find("xxEND ab"),
            Some(Match {
                at: 2,
                sequence: "END"
            })
        );
        assert!(stops(&[""]).is_empty());
    }

    #[test]
    fn streamed_text_is_held_back_only_while_it_may_start_a_sequence() {
        let mut scanner = StopScanner::new(stops(&["</answer>"]));
        assert_eq!(
            scanner.push("The answer is 4<"),
            Scanned::Text("The answer is 4".into())
        );
        assert_eq!(scanner.push("/ans"), Scanned::Text(String::new()));
        assert_eq!(
            scanner.push("wer> and more"),
            Scanned::Stop {
                text: String::new(),
                sequence: "</answer>",
            }
        );

        let mut scanner = StopScanner::new(stops(&["STOP"]));
        assert_eq!(scanner.push("a ST"), Scanned::Text("a ".into()));
        assert_eq!(scanner.push("ART é"), Scanned::Text("START é".into()));
        assert_eq!(scanner.push("S"), Scanned::Text(String::new()));
        assert_eq!(scanner.flush(), "S");
    }

    #[test]
    fn held_text_is_cut_at_a_multibyte_boundary() {
        let mut scanner = StopScanner::new(stops(&["éé"]));
        assert_eq!(scanner.push("aé"), Scanned::Text("a".into()));
        assert_eq!(scanner.push("b"), Scanned::Text("éb".into()));
        assert_eq!(
            scanner.push("xéé"),
            Scanned::Stop {
                text: "x".into(),
                sequence: "éé",
            }
        );
    }

    #[test]
    fn without_sequences_text_passes_as_it_is() {
        let mut scanner = StopScanner::default();
        assert!(!scanner.is_active());
        assert_eq!(scanner.push("a<"), Scanned::Text("a<".into()));
        assert_eq!(scanner.flush(), "");
    }
}
