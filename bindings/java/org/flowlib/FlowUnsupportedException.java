package org.flowlib;

/** A valid request this build cannot do. */
public class FlowUnsupportedException extends FlowException {
    private static final long serialVersionUID = 1L;

    public FlowUnsupportedException(String message) {
        super(Status.UNSUPPORTED, message);
    }
}
