//! Procedure codes and protocol IE ids, as defined in the E2AP constants module
//! (`asn1/E2AP-Constants.asn`, v03.01 plus RIC Query and Subscription Audit).
//! The oracle test checks this table against pycrate's compiled constants.

/// `ProcedureCode` values.
pub mod procedure {
    pub const E2_SETUP: u8 = 1;
    pub const ERROR_INDICATION: u8 = 2;
    pub const RESET: u8 = 3;
    pub const RIC_CONTROL: u8 = 4;
    pub const RIC_INDICATION: u8 = 5;
    pub const RIC_SERVICE_QUERY: u8 = 6;
    pub const RIC_SERVICE_UPDATE: u8 = 7;
    pub const RIC_SUBSCRIPTION: u8 = 8;
    pub const RIC_SUBSCRIPTION_DELETE: u8 = 9;
    pub const E2_NODE_CONFIGURATION_UPDATE: u8 = 10;
    pub const E2_CONNECTION_UPDATE: u8 = 11;
    pub const RIC_SUBSCRIPTION_DELETE_REQUIRED: u8 = 12;
    pub const E2_REMOVAL: u8 = 13;
    pub const RIC_SUBSCRIPTION_MODIFICATION: u8 = 14;
    pub const RIC_SUBSCRIPTION_MODIFICATION_REQUIRED: u8 = 15;
    pub const RIC_QUERY: u8 = 16;
    pub const RIC_SUBSCRIPTION_AUDIT: u8 = 17;
}

/// `ProtocolIE-ID` values the proxy reads.
pub mod ie {
    pub const CAUSE: u16 = 1;
    pub const CRITICALITY_DIAGNOSTICS: u16 = 2;
    pub const GLOBAL_E2NODE_ID: u16 = 3;
    pub const GLOBAL_RIC_ID: u16 = 4;
    pub const RAN_FUNCTION_ID: u16 = 5;
    pub const RAN_FUNCTION_ID_ITEM: u16 = 6;
    pub const RAN_FUNCTION_IE_CAUSE_ITEM: u16 = 7;
    pub const RAN_FUNCTION_ITEM: u16 = 8;
    pub const RAN_FUNCTIONS_ACCEPTED: u16 = 9;
    pub const RAN_FUNCTIONS_ADDED: u16 = 10;
    pub const RAN_FUNCTIONS_DELETED: u16 = 11;
    pub const RAN_FUNCTIONS_MODIFIED: u16 = 12;
    pub const RAN_FUNCTIONS_REJECTED: u16 = 13;
    pub const RIC_ACTION_ID: u16 = 15;
    pub const RIC_CONTROL_ACK_REQUEST: u16 = 21;
    pub const RIC_INDICATION_SN: u16 = 27;
    pub const RIC_REQUEST_ID: u16 = 29;
    pub const RIC_SUBSCRIPTION_DETAILS: u16 = 30;
    pub const TIME_TO_WAIT: u16 = 31;
    pub const TRANSACTION_ID: u16 = 49;
}

/// A procedure code with its name, for logs and bounded metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Procedure(pub u8);

impl Procedure {
    /// The procedure's name as in the E2AP specification, or "unknown".
    pub fn name(self) -> &'static str {
        use procedure::*;
        match self.0 {
            E2_SETUP => "E2setup",
            ERROR_INDICATION => "ErrorIndication",
            RESET => "Reset",
            RIC_CONTROL => "RICcontrol",
            RIC_INDICATION => "RICindication",
            RIC_SERVICE_QUERY => "RICserviceQuery",
            RIC_SERVICE_UPDATE => "RICserviceUpdate",
            RIC_SUBSCRIPTION => "RICsubscription",
            RIC_SUBSCRIPTION_DELETE => "RICsubscriptionDelete",
            E2_NODE_CONFIGURATION_UPDATE => "E2nodeConfigurationUpdate",
            E2_CONNECTION_UPDATE => "E2connectionUpdate",
            RIC_SUBSCRIPTION_DELETE_REQUIRED => "RICsubscriptionDeleteRequired",
            E2_REMOVAL => "E2removal",
            RIC_SUBSCRIPTION_MODIFICATION => "RICsubscriptionModification",
            RIC_SUBSCRIPTION_MODIFICATION_REQUIRED => "RICsubscriptionModificationRequired",
            RIC_QUERY => "RICquery",
            RIC_SUBSCRIPTION_AUDIT => "RICsubscriptionAudit",
            _ => "unknown",
        }
    }

    /// Class 1 procedures answer an initiating message with a successful or
    /// unsuccessful outcome; class 2 ones (Indication, Error Indication, Service
    /// Query, Subscription Delete Required) have no response.
    pub fn expects_response(self) -> bool {
        use procedure::*;
        !matches!(
            self.0,
            RIC_INDICATION
                | ERROR_INDICATION
                | RIC_SERVICE_QUERY
                | RIC_SUBSCRIPTION_DELETE_REQUIRED
        ) && self.is_known()
    }

    /// Whether requests and responses of this procedure are matched by
    /// RICrequestID (else by TransactionID).
    pub fn keyed_by_request_id(self) -> bool {
        use procedure::*;
        matches!(
            self.0,
            RIC_CONTROL
                | RIC_SUBSCRIPTION
                | RIC_SUBSCRIPTION_DELETE
                | RIC_SUBSCRIPTION_MODIFICATION
                | RIC_SUBSCRIPTION_MODIFICATION_REQUIRED
                | RIC_QUERY
        )
    }

    /// Whether the procedure code is one this build knows.
    pub fn is_known(self) -> bool {
        (procedure::E2_SETUP..=procedure::RIC_SUBSCRIPTION_AUDIT).contains(&self.0)
    }
}

impl std::fmt::Display for Procedure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}
