//! The batching policy: one on-chain payout per (guest, client) carries every receipt up to
//! its seq (cumulative pattern), so the relay waits until enough is unpaid or a receipt has
//! waited long enough, then submits only the latest receipt.
//!
//! Keep `max_delay_s` well below the contract's `withdraw_delay`: a client that asks to
//! withdraw gets its remaining deposit once that delay is over, and whatever the relay has
//! not submitted by then can no longer be paid from it.

use super::store::Channel;

/// When to submit.
#[derive(Clone, Copy, Debug)]
pub struct BatchPolicy {
    /// Submit as soon as at least this much (nanoton) is unpaid.
    pub threshold: u128,
    /// Submit anything unpaid once its oldest receipt has waited this long (seconds).
    pub max_delay_s: u64,
    /// A submission not confirmed after this long (seconds) is sent again.
    pub resubmit_after_s: u64,
}

/// What to do with a channel now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Everything stored is paid.
    Idle,
    /// Unpaid receipts, but not yet worth a transaction (or one is in flight).
    Wait,
    /// Submit the latest receipt; the reason is for logs.
    Submit(&'static str),
}

impl BatchPolicy {
    /// Decides for one channel at time `now` (unix seconds).
    pub fn decide(&self, c: &Channel, now: u64) -> Decision {
        if c.latest_seq <= c.confirmed_seq {
            return Decision::Idle;
        }
        let in_flight = c.submitted_seq >= c.latest_seq
            && now < c.submitted_at.saturating_add(self.resubmit_after_s);
        if in_flight {
            return Decision::Wait;
        }
        let unpaid = c.latest_price.saturating_sub(c.confirmed_paid);
        if unpaid >= self.threshold {
            return Decision::Submit("unpaid amount over threshold");
        }
        if now >= c.oldest_unpaid_at.saturating_add(self.max_delay_s) {
            return Decision::Submit("oldest unpaid receipt waited long enough");
        }
        Decision::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(latest_seq: u64, latest_price: u128, confirmed_seq: u64, paid: u128) -> Channel {
        Channel {
            guest_key: [1; 32],
            client_key: [2; 32],
            latest_seq,
            latest_price,
            oldest_unpaid_at: 100,
            confirmed_seq,
            confirmed_paid: paid,
            submitted_seq: 0,
            submitted_at: 0,
            last_error: None,
        }
    }

    const P: BatchPolicy = BatchPolicy {
        threshold: 1000,
        max_delay_s: 60,
        resubmit_after_s: 30,
    };

    #[test]
    fn idle_when_all_paid() {
        assert_eq!(P.decide(&ch(5, 500, 5, 500), 1000), Decision::Idle);
    }

    #[test]
    fn threshold_triggers() {
        assert_eq!(
            P.decide(&ch(5, 1500, 3, 499), 101),
            Decision::Submit("unpaid amount over threshold")
        );
        assert_eq!(P.decide(&ch(5, 1500, 3, 501), 101), Decision::Wait);
    }

    #[test]
    fn timer_triggers() {
        assert_eq!(P.decide(&ch(5, 10, 3, 5), 159), Decision::Wait);
        assert!(matches!(
            P.decide(&ch(5, 10, 3, 5), 160),
            Decision::Submit(_)
        ));
    }

    #[test]
    fn in_flight_waits_then_resubmits() {
        let mut c = ch(5, 5000, 3, 0);
        c.submitted_seq = 5;
        c.submitted_at = 200;
        assert_eq!(P.decide(&c, 229), Decision::Wait);
        assert!(matches!(P.decide(&c, 230), Decision::Submit(_)));
        // A newer receipt than the one in flight is submitted at once.
        c.latest_seq = 6;
        assert!(matches!(P.decide(&c, 201), Decision::Submit(_)));
    }
}
