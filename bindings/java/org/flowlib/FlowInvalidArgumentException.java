package org.flowlib;

/** Bad argument: non-finite or out-of-support data, n = 0, an unknown device... */
public class FlowInvalidArgumentException extends FlowException {
    private static final long serialVersionUID = 1L;

    public FlowInvalidArgumentException(String message) {
        super(Status.INVALID_ARGUMENT, message);
    }
}
