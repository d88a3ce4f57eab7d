//! The client-side limit check both backends run before sending a transaction, so that an
//! over-limit request fails the same way everywhere and nothing of it is written.

use crate::MetaError;
use crate::store::{MetaLimits, Txn};

/// Refuses a transaction that etcd would refuse: more than `max_txn_ops` compares, or more
/// than `max_txn_ops` ops in either branch (etcd counts the largest of the three), or an
/// encoded size above `max_request_bytes`.
pub fn check_limits(txn: &Txn, limits: MetaLimits) -> Result<(), MetaError> {
    let ops = txn
        .compares
        .len()
        .max(txn.success.len())
        .max(txn.failure.len());
    if ops > limits.max_txn_ops {
        return Err(MetaError::TooManyOps {
            ops,
            limit: limits.max_txn_ops,
        });
    }
    let bytes = txn.encoded_len();
    if bytes > limits.max_request_bytes {
        return Err(MetaError::RequestTooLarge {
            bytes,
            limit: limits.max_request_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Compare, TxnOp};

    fn puts(n: usize) -> Vec<TxnOp> {
        (0..n).map(|i| TxnOp::put(format!("k{i}"), "v")).collect()
    }

    #[test]
    fn counts_the_largest_part_not_the_sum() {
        let limits = MetaLimits::default();
        let txn = Txn::new()
            .when((0..128).map(|i| Compare::absent(format!("k{i}"))))
            .and_then(puts(128))
            .or_else(puts(128));
        assert_eq!(check_limits(&txn, limits), Ok(()));
        let txn = Txn::new().or_else(puts(129));
        assert_eq!(
            check_limits(&txn, limits),
            Err(MetaError::TooManyOps {
                ops: 129,
                limit: 128
            })
        );
        let txn = Txn::new().when((0..129).map(|i| Compare::absent(format!("k{i}"))));
        assert!(matches!(
            check_limits(&txn, limits),
            Err(MetaError::TooManyOps { ops: 129, .. })
        ));
    }

    #[test]
    fn refuses_large_requests() {
        let limits = MetaLimits::default();
        let txn = Txn::new().and_then([TxnOp::put("k", vec![0u8; 1_600_000])]);
        assert!(matches!(
            check_limits(&txn, limits),
            Err(MetaError::RequestTooLarge {
                limit: 1_572_864,
                ..
            })
        ));
        let txn = Txn::new().and_then([TxnOp::put("k", vec![0u8; 1_400_000])]);
        assert_eq!(check_limits(&txn, limits), Ok(()));
    }
}
