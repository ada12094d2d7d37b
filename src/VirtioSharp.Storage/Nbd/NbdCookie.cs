namespace VirtioSharp.Storage.Nbd;

/// <summary>
/// The 64-bit cookie (handle) of an NBD command: generation 16 bits | queue 12 | slot 16 | part 20. The server MUST
/// echo it unchanged (proto.md "Transmission"); the generation changes each time a slot is reused, so a late or
/// duplicated reply for an earlier request on the same slot does not match.
/// </summary>
internal static class NbdCookie
{
    public const int MaxQueues = 1 << 12;
    public const int MaxDepth = 1 << 16;
    public const int MaxParts = 1 << 20;

    public static ulong Make(ushort generation, int queue, int slot, int part) =>
        (ulong)generation << 48 | (ulong)(uint)queue << 36 | (ulong)(uint)slot << 20 | (uint)part;

    public static ushort Generation(ulong cookie) => (ushort)(cookie >> 48);
    public static int Queue(ulong cookie) => (int)(cookie >> 36) & (MaxQueues - 1);
    public static int Slot(ulong cookie) => (int)(cookie >> 20) & (MaxDepth - 1);
    public static int Part(ulong cookie) => (int)cookie & (MaxParts - 1);
}
