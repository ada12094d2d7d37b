namespace VirtioSharp.VhostUser.Protocol;

/// <summary>
/// VhostUserLog (SET_LOG_BASE): the log's size in bytes and the offset in the supplied fd where it starts, i.e. where
/// guest-physical address 0 is logged (vhost-user.rst "Log description").
/// </summary>
internal readonly record struct LogDescription(ulong Size, ulong Offset)
{
    /// <summary>Bytes on the wire.</summary>
    public const int WireSize = 16;

    /// <summary>Reads the 16-byte payload.</summary>
    public static LogDescription Parse(ref PayloadReader r) => new(r.U64(), r.U64());
}
