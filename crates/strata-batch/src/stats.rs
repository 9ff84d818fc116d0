//! The statistics of SPEC §4, Experiments, on `statrs` distributions.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// The two-sided 95% normal quantile the spec fixes.
pub const Z_95: f64 = 1.959963984540054;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub lift: Option<f64>,
    pub p_value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// A variant against control, each as `(converted, exposed)` with exposed > 0.
pub fn compare(control: (u64, u64), variant: (u64, u64)) -> Comparison {
    let (c0, n0) = (control.0 as f64, control.1 as f64);
    let (c1, n1) = (variant.0 as f64, variant.1 as f64);
    let (p0, p1) = (c0 / n0, c1 / n1);
    let lift = (p0 > 0.0).then(|| (p1 - p0) / p0);
    let pooled = (c0 + c1) / (n0 + n1);
    let pooled_se = (pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1)).sqrt();
    let p_value = if pooled_se > 0.0 {
        let z = (p1 - p0) / pooled_se;
        let normal = Normal::standard();
        (2.0 * normal.cdf(-z.abs())).min(1.0)
    } else {
        // Every person converted, or none did, in both groups: no difference.
        1.0
    };
    let se = (p1 * (1.0 - p1) / n1 + p0 * (1.0 - p0) / n0).sqrt();
    let diff = p1 - p0;
    Comparison {
        lift,
        p_value,
        ci_low: diff - Z_95 * se,
        ci_high: diff + Z_95 * se,
    }
}

/// Chi-square goodness of fit of exposure counts against an equal split,
/// `k - 1` degrees of freedom; none for fewer than two variants.
pub fn srm_p_value(counts: &[u64]) -> Option<f64> {
    if counts.len() < 2 {
        return None;
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let expected = total as f64 / counts.len() as f64;
    let statistic: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    let distribution = ChiSquared::new((counts.len() - 1) as f64).ok()?;
    Some(distribution.sf(statistic))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn z_test_matches_a_hand_computation() {
        // control 10/100, treatment 20/100: pooled 0.15,
        // se = sqrt(0.15*0.85*0.02) = 0.0504975, z = 1.980295,
        // p = erfc(1.980295/sqrt 2) = 0.0476704.
        let c = compare((10, 100), (20, 100));
        assert!(close(c.lift.unwrap(), 1.0));
        assert!((c.p_value - 0.047_670_38).abs() < 1e-7, "{}", c.p_value);
        // unpooled se = sqrt(0.16/100 + 0.09/100) = 0.05
        assert!(close(c.ci_low, 0.1 - Z_95 * 0.05));
        assert!(close(c.ci_high, 0.1 + Z_95 * 0.05));
    }

    #[test]
    fn degenerate_rates() {
        let c = compare((0, 10), (0, 12));
        assert_eq!(c.lift, None);
        assert_eq!(c.p_value, 1.0);
        assert!(close(c.ci_low, 0.0) && close(c.ci_high, 0.0));
    }

    #[test]
    fn srm_against_equal_split() {
        // 60 vs 40: chi2 = (10^2 + 10^2)/50 = 4, df 1: erfc(sqrt 2) = 0.0455003.
        assert!((srm_p_value(&[60, 40]).unwrap() - 0.045_500_26).abs() < 1e-7);
        // df 2: exp(-x/2); counts 30/30/60: expected 40, chi2 = (100+100+400)/40 = 15.
        assert!((srm_p_value(&[30, 30, 60]).unwrap() - (-7.5f64).exp()).abs() < 1e-9);
        assert_eq!(srm_p_value(&[5]), None);
    }
}
