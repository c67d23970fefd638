package bmcsim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// baseRegistry is the DMTF Base message registry version the messages below come from.
const baseRegistry = "Base.1.16.0"

// message is one entry of the Base registry: text with %1.. placeholders.
type message struct {
	id, text, severity, resolution string
}

// The subset of Base.1.16.0 the emulator sends, with the registry's texts.
var (
	msgResourceNotFound      = message{"ResourceNotFound", "The requested resource of type %1 named '%2' was not found.", "Critical", "Provide a valid resource identifier and resubmit the request."}
	msgInvalidURI            = message{"InvalidURI", "The URI %1 was not found.", "Critical", "Provide a valid URI and resubmit the request."}
	msgNoValidSession        = message{"NoValidSession", "There is no valid session established with the implementation.", "Critical", "Establish a session before attempting any operations."}
	msgAccessDenied          = message{"AccessDenied", "While attempting to establish a connection to '%1', the service denied access.", "Critical", "Attempt to ensure that the URI is correct and that the service has the appropriate credentials."}
	msgOperationNotAllowed   = message{"OperationNotAllowed", "The HTTP method is not allowed on this resource.", "Critical", "None."}
	msgMalformedJSON         = message{"MalformedJSON", "The request body submitted was malformed JSON and could not be parsed by the receiving service.", "Critical", "Ensure that the request body is valid JSON and resubmit the request."}
	msgEmptyJSON             = message{"EmptyJSON", "The request body submitted contained an empty JSON object and the service is unable to process it.", "Warning", "Add properties in the JSON object and resubmit the request."}
	msgPayloadTooLarge       = message{"PayloadTooLarge", "The supplied payload exceeds the maximum size supported by the service.", "Critical", "Check that the supplied payload is correct and supported by this service."}
	msgPropertyUnknown       = message{"PropertyUnknown", "The property %1 is not in the list of valid properties for the resource.", "Warning", "Remove the unknown property from the request body and resubmit the request if the operation failed."}
	msgPropertyNotWritable   = message{"PropertyNotWritable", "The property %1 is a read only property and cannot be assigned a value.", "Warning", "Remove the property from the request body and resubmit the request if the operation failed."}
	msgPropertyMissing       = message{"PropertyMissing", "The property %1 is a required property and must be included in the request.", "Warning", "Ensure that the property is in the request body and has a valid value and resubmit the request if the operation failed."}
	msgPropertyValueType     = message{"PropertyValueTypeError", "The value '%1' for the property %2 is of a different type than the property can accept.", "Warning", "Correct the value for the property in the request body and resubmit the request if the operation failed."}
	msgPropertyValueNotInLst = message{"PropertyValueNotInList", "The value '%1' for the property %2 is not in the list of acceptable values.", "Warning", "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed."}
	msgActionNotSupported    = message{"ActionNotSupported", "The action %1 is not supported by the resource.", "Critical", "The action supplied cannot be resubmitted to the implementation.  Perhaps the action was invalid, the wrong resource was the target or the implementation documentation may be of assistance."}
	msgActionParamMissing    = message{"ActionParameterMissing", "The action %1 requires the parameter %2 to be present in the request body.", "Critical", "Supply the action with the required parameter in the request body when the request is resubmitted."}
	msgActionParamUnknown    = message{"ActionParameterUnknown", "The action %1 was submitted with the invalid parameter %2.", "Warning", "Correct the invalid action parameter and resubmit the request if the operation failed."}
	msgActionParamType       = message{"ActionParameterValueTypeError", "The value '%1' for the parameter %2 in the action %3 is of a different type than the parameter can accept.", "Warning", "Correct the value for the parameter in the request body and resubmit the request if the operation failed."}
	msgActionParamNotInList  = message{"ActionParameterValueNotInList", "The value '%1' for the parameter %2 in the action %3 is not in the list of acceptable values.", "Warning", "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed."}
	msgPreconditionFailed    = message{"PreconditionFailed", "The ETag supplied did not match the ETag required to change this resource.", "Critical", "Try the operation again using the appropriate ETag."}
	msgQueryNotSupported     = message{"QueryNotSupported", "Querying is not supported by the implementation.", "Warning", "Remove the query parameters and resubmit the request if the operation failed."}
	msgInternalError         = message{"InternalError", "The request failed due to an internal service error.  The service is still operational.", "Critical", "Resubmit the request.  If the problem persists, consider resetting the service."}
	msgSessionLimitExceeded  = message{"SessionLimitExceeded", "The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.", "Critical", "Reduce the number of other sessions before trying to establish the session or increase the limit of simultaneous sessions, if supported."}
)

// messageJSON renders one Message object (Message.v1_1_2) with its arguments filled in.
func (m message) messageJSON(args ...string) map[string]any {
	text := m.text
	// Highest placeholder first, so %1 does not eat the start of %10.
	for i := len(args); i >= 1; i-- {
		text = strings.ReplaceAll(text, "%"+strconv.Itoa(i), args[i-1])
	}
	if args == nil {
		args = []string{}
	}
	return map[string]any{
		"@odata.type":     "#Message.v1_1_2.Message",
		"MessageId":       baseRegistry + "." + m.id,
		"Message":         text,
		"MessageArgs":     args,
		"MessageSeverity": m.severity,
		"Severity":        m.severity, // deprecated, still read by older clients
		"Resolution":      m.resolution,
	}
}

// redfishError is an error response: an HTTP status and one Base message.
type redfishError struct {
	status int
	msg    message
	args   []string
	// detail, if set, replaces the top-level message (e.g. an InternalError's cause).
	detail string
}

func (e *redfishError) Error() string {
	info := e.msg.messageJSON(e.args...)
	if e.detail != "" {
		return e.detail
	}
	return info["Message"].(string)
}

func rfErr(status int, msg message, args ...string) *redfishError {
	return &redfishError{status: status, msg: msg, args: args}
}

// writeError writes the error body the Redfish specification defines: an "error" object
// with code and message and the message in @Message.ExtendedInfo.
func writeError(w http.ResponseWriter, e *redfishError) {
	info := e.msg.messageJSON(e.args...)
	text := info["Message"].(string)
	if e.detail != "" {
		text = e.detail
	}
	body := map[string]any{
		"error": map[string]any{
			"code":                  baseRegistry + "." + e.msg.id,
			"message":               text,
			"@Message.ExtendedInfo": []any{info},
		},
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.status)
	_, _ = w.Write(append(b, '\n'))
}
