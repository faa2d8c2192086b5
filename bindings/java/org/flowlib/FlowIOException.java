package org.flowlib;

/** A file could not be read or written. */
public class FlowIOException extends FlowException {
    private static final long serialVersionUID = 1L;

    public FlowIOException(String message) {
        super(Status.IO, message);
    }
}
