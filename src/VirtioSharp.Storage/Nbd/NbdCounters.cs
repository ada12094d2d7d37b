namespace VirtioSharp.Storage.Nbd;

/// <summary>The live counters behind <see cref="NbdStats"/>, shared by a storage's connections and queues.</summary>
internal sealed class NbdCounters
{
    public long Requests, Commands, Failed, Reconnects, Disconnects, ProtocolErrors, Resends, InternalFaults;

    public NbdStats Snapshot() => new()
    {
        Requests = Volatile.Read(ref Requests),
        Commands = Volatile.Read(ref Commands),
        Failed = Volatile.Read(ref Failed),
        Reconnects = Volatile.Read(ref Reconnects),
        Disconnects = Volatile.Read(ref Disconnects),
        ProtocolErrors = Volatile.Read(ref ProtocolErrors),
        Resends = Volatile.Read(ref Resends),
        InternalFaults = Volatile.Read(ref InternalFaults),
    };
}
