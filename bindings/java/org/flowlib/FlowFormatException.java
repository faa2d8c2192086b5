package org.flowlib;

/** A model file or buffer is malformed. */
public class FlowFormatException extends FlowException {
    private static final long serialVersionUID = 1L;

    public FlowFormatException(String message) {
        super(Status.FORMAT, message);
    }
}
