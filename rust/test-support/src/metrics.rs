//! Reading Prometheus text (`/metrics`, or a service's recorder rendered in a test).

/// The samples of `name` in `text` whose labels include every one of `labels` (in any order;
/// a sample may have others too), with their values.
fn samples<'a>(
    text: &'a str,
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = f64> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let all = labels
            .iter()
            .all(|(k, v)| set.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
        all.then(|| value.trim().parse().unwrap())
    })
}

/// The value of the first sample `name{labels}` in `text` (see [`sum`] for the matching), or
/// `None`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text, name, labels).next()
}

/// The sum of every sample of `name` in `text` whose labels include all of `labels` (zero if
/// there is none): a counter's total over the labels not named.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text, name, labels).sum()
}

/// The metrics of `text` (by their `# TYPE` line) that have no `# HELP` line: each metric a
/// service exports is described for whoever reads `/metrics`.
pub fn undescribed(text: &str) -> Vec<&str> {
    let described: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP ")?.split(' ').next())
        .collect();
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next())
        .filter(|name| !described.contains(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{sample, sum, undescribed};

    #[test]
    fn a_metric_without_help_is_named() {
        let text = "# HELP x An x.\n# TYPE x counter\nx 1\n# TYPE y gauge\ny 2\n";
        assert_eq!(undescribed(text), ["y"]);
    }

    #[test]
    fn samples_are_found_by_their_labels_and_summed_over_the_others() {
        let text =
            "# TYPE x counter\nx{a=\"1\",b=\"2\"} 3\nx{a=\"1\",b=\"3\"} 4\nxy{a=\"1\"} 9\ny 5\n";
        assert_eq!(sample(text, "x", &[("b", "3"), ("a", "1")]), Some(4.0));
        assert_eq!(sample(text, "x", &[("a", "1")]), Some(3.0));
        assert_eq!(sample(text, "x", &[("a", "2")]), None);
        assert_eq!(sample(text, "y", &[]), Some(5.0));
        assert_eq!(sample(text, "z", &[]), None);
        assert_eq!(sum(text, "x", &[("a", "1")]), 7.0);
        assert_eq!(sum(text, "x", &[("a", "2")]), 0.0);
    }
}
