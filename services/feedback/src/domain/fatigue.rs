//! Fatigue control: whether a contact may be asked again.

use chrono::{DateTime, Duration, Utc};
use rapport_proto::feedback::v1::SkipReason;
use uuid::Uuid;

/// The "do not ask again within N days" rules that apply to one survey;
/// 0 days means no rule.
#[derive(Debug, Clone, Copy)]
pub struct FatigueRules {
    pub tenant_days: i32,
    pub survey_days: i32,
}

impl FatigueRules {
    /// The oldest invitation time any rule looks at.
    pub fn horizon(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::days(i64::from(self.tenant_days.max(self.survey_days)))
    }
}

/// An earlier invitation of the contact.
#[derive(Debug, Clone)]
pub struct PastInvitation {
    pub survey_id: Uuid,
    pub create_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
    pub answered: bool,
}

/// Why a contact with these earlier invitations may not be invited to
/// `survey` now, and the invitation that decided it. An open invitation to
/// the same survey comes first, then the survey's rule, then the tenant's.
pub fn skip_reason(
    survey: Uuid,
    rules: FatigueRules,
    past: &[PastInvitation],
    now: DateTime<Utc>,
) -> Option<(SkipReason, DateTime<Utc>)> {
    let within = |days: i32, invitation: &PastInvitation| {
        days > 0 && invitation.create_time > now - Duration::days(i64::from(days))
    };
    let newest = |matches: &dyn Fn(&PastInvitation) -> bool| {
        past.iter()
            .filter(|i| matches(i))
            .map(|i| i.create_time)
            .max()
    };
    if let Some(time) = newest(&|i| i.survey_id == survey && !i.answered && i.expire_time > now) {
        return Some((SkipReason::AlreadyInvited, time));
    }
    if let Some(time) = newest(&|i| i.survey_id == survey && within(rules.survey_days, i)) {
        return Some((SkipReason::SurveyFatigue, time));
    }
    newest(&|i| within(rules.tenant_days, i)).map(|time| (SkipReason::TenantFatigue, time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::days(day)
    }

    fn invited(survey: Uuid, day: i64, answered: bool) -> PastInvitation {
        PastInvitation {
            survey_id: survey,
            create_time: at(day),
            expire_time: at(day + 30),
            answered,
        }
    }

    #[test]
    fn rules_apply_in_order() {
        let this = Uuid::from_u128(1);
        let other = Uuid::from_u128(2);
        let now = at(100);
        let rules = FatigueRules {
            tenant_days: 7,
            survey_days: 30,
        };
        // Nothing earlier: invite.
        assert_eq!(skip_reason(this, rules, &[], now), None);
        // Open invitation to this survey (day 90, expires day 120).
        assert_eq!(
            skip_reason(this, rules, &[invited(this, 90, false)], now),
            Some((SkipReason::AlreadyInvited, at(90)))
        );
        // Answered on day 80: inside the survey's 30 days.
        assert_eq!(
            skip_reason(this, rules, &[invited(this, 80, true)], now),
            Some((SkipReason::SurveyFatigue, at(80)))
        );
        // Another survey 5 days ago: inside the tenant's 7 days.
        assert_eq!(
            skip_reason(this, rules, &[invited(other, 95, true)], now),
            Some((SkipReason::TenantFatigue, at(95)))
        );
        // Another survey 8 days ago, this one 31 days ago (answered): free.
        assert_eq!(
            skip_reason(
                this,
                rules,
                &[invited(other, 92, false), invited(this, 69, true)],
                now
            ),
            None
        );
    }

    #[test]
    fn no_rules_only_stop_open_invitations() {
        let this = Uuid::from_u128(1);
        let rules = FatigueRules {
            tenant_days: 0,
            survey_days: 0,
        };
        assert_eq!(
            skip_reason(this, rules, &[invited(this, 99, true)], at(100)),
            None
        );
        // An expired unanswered invitation does not block a new one.
        assert_eq!(
            skip_reason(this, rules, &[invited(this, 60, false)], at(100)),
            None
        );
        assert_eq!(rules.horizon(at(100)), at(100));
    }
}
