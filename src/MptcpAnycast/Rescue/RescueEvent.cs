namespace MptcpAnycast.Rescue;

/// <summary>What the agent reports; the host maps each kind to a log message of its own.</summary>
public enum RescueEventKind
{
    /// <summary>The program is attached and the lookup protocol listens.</summary>
    Started,

    /// <summary>The program is detached.</summary>
    Stopped,

    /// <summary>A flow's owner was found and the flow is tunnelled to it from now on.</summary>
    FlowRescued,

    /// <summary>No POP owns a flow that reached this one: the client was sent a RST.</summary>
    FlowReset,

    /// <summary>A lookup, a send or a status write failed, or the attachment found something the operator should see.</summary>
    Failed,
}

/// <summary>One report of the agent: its kind, a sentence, and the exception when something failed.</summary>
public readonly record struct RescueEvent(RescueEventKind Kind, string Message, Exception? Exception = null);
