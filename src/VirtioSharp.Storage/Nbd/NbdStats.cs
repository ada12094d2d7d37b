namespace VirtioSharp.Storage.Nbd;

/// <summary>Counters of an <see cref="NbdStorage"/> since it was opened (a snapshot).</summary>
public sealed record NbdStats
{
    /// <summary>Requests submitted.</summary>
    public long Requests { get; init; }
    /// <summary>NBD commands sent (a request may be split into several; resends count again).</summary>
    public long Commands { get; init; }
    /// <summary>Requests that failed (server errors, EIO after the reconnect timeout, refused requests).</summary>
    public long Failed { get; init; }
    /// <summary>Connections established after the first (one per reconnection).</summary>
    public long Reconnects { get; init; }
    /// <summary>Connections that broke (server gone, hung, or in breach of the protocol).</summary>
    public long Disconnects { get; init; }
    /// <summary>Connections dropped because the server broke the protocol (bad magic, unknown cookie, bad chunk …).</summary>
    public long ProtocolErrors { get; init; }
    /// <summary>Requests re-sent on a new connection.</summary>
    public long Resends { get; init; }
    /// <summary>Unexpected exceptions in the connection threads (a bug if ever nonzero).</summary>
    public long InternalFaults { get; init; }
}
