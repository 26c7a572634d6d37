//! Rule "accounts": transfers between balances.

use attest_protocol::AccountId;
use attest_protocol::tx::Transfer;

use crate::error::TxError;
use crate::events::Event;
use crate::state::State;

impl State {
    /// Rule "transfer": moves a positive amount from the sender's balance (after the fee) to
    /// any account, creating it if new. A transfer to oneself is allowed and changes nothing
    /// but the fee and nonce.
    pub(crate) fn transfer(
        &mut self,
        from: AccountId,
        t: &Transfer,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        if t.amount.0 == 0 {
            return Err(TxError::ZeroAmount { what: "a transfer" });
        }
        self.debit(from, t.amount)?;
        self.credit(t.to, t.amount)?;
        events.push(Event::Transfer {
            from,
            to: t.to,
            amount: t.amount,
        });
        Ok(())
    }
}
