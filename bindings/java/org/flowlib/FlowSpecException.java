package org.flowlib;

/** The model or optimizer spec is wrong (the message names the field). */
public class FlowSpecException extends FlowException {
    private static final long serialVersionUID = 1L;

    public FlowSpecException(String message) {
        super(Status.SPEC, message);
    }
}
