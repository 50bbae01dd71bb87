#![no_main]
//! Fuzzes the exposition parsers and lint: any bytes give entries or errors,
//! never a panic; every accessor of a parsed series works.
use libfuzzer_sys::fuzz_target;
use promshard_promlib::exposition::{Entry, Format, Parser, lint};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Text, Format::OpenMetrics] {
        let mut p = Parser::new(data, format);
        while let Some(e) = p.next() {
            let line = p.line();
            assert!(line >= 1);
            match e {
                Ok(Entry::Series(s)) => {
                    assert!(data.len() >= s.raw().len());
                    let _ = s.metric_name();
                    let labels = s.to_labels();
                    assert_eq!(labels.len(), s.labels().count() + 1);
                    if let Some(ex) = &s.exemplar {
                        let _ = ex.to_labels();
                    }
                }
                Ok(_) => {}
                Err(e) => assert!(e.line >= 1),
            }
        }
        let _ = lint(data, format);
    }
});
