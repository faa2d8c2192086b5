package org.flowlib;

/** A result was not finite; a failed train step leaves the model unchanged. */
public class FlowNumericException extends FlowException {
    private static final long serialVersionUID = 1L;

    public FlowNumericException(String message) {
        super(Status.NUMERIC, message);
    }
}
