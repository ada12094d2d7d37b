namespace VirtioSharp.Fuzz.Targets;

/// <summary>Small valid device-ring programs: a driver that publishes chains the way the spec says, then a device that serves them.</summary>
public static class DeviceRingSeeds
{
    public static IEnumerable<(string Name, byte[] Input)> Generate()
    {
        yield return ("split-one", Split(DeviceRingTarget.Config.EventIdx, chains: 1, indirect: false));
        yield return ("split-three", Split(0, chains: 3, indirect: false));
        yield return ("split-indirect", Split(DeviceRingTarget.Config.Indirect, chains: 1, indirect: true));
        yield return ("split-inorder", Split(DeviceRingTarget.Config.InOrder, chains: 3, indirect: false));
        yield return ("packed-one", Packed(DeviceRingTarget.Config.EventIdx, chains: 1));
        yield return ("packed-inorder", Packed(DeviceRingTarget.Config.InOrder, chains: 3));
    }

    private static InputBuilder Poke(InputBuilder b, ulong gpa, ReadOnlySpan<byte> bytes) =>
        b.U8((int)DeviceRingTarget.Op.Poke).U16((int)gpa).U8(bytes.Length).Bytes(bytes);

    private static byte[] Desc(ulong addr, uint len, ushort flags, ushort next) =>
        new InputBuilder().U64(addr).U32(len).U16(flags).U16(next).ToArray();

    private static byte[] U16(int v) => [(byte)v, (byte)(v >> 8)];

    private static byte[] Split(DeviceRingTarget.Config cfg, int chains, bool indirect)
    {
        const byte sizeByte = 3;   // 8 entries
        var (size, desc, avail, _) = DeviceRingTarget.Placement(false, sizeByte, 0);
        var b = new InputBuilder().U8((int)cfg).U8(sizeByte).U8(0).U8(15);
        for (int i = 0; i < chains; i++)
        {
            int d = i * 2;
            ulong buf = 0x3000 + (ulong)i * 0x100;
            if (indirect)
            {
                ulong table = 0x2800;
                Poke(b, table, Desc(buf, 16, 1, 1));
                Poke(b, table + 16, Desc(buf + 0x40, 32, 2, 0));
                Poke(b, desc + (ulong)d * 16, Desc(table, 32, 4, 0));
            }
            else
            {
                Poke(b, desc + (ulong)d * 16, Desc(buf, 16, 1, (ushort)(d + 1)));        // readable, NEXT
                Poke(b, desc + (ulong)(d + 1) * 16, Desc(buf + 0x40, 32, 2, 0));      // writable
            }
            Poke(b, avail + 4 + 2UL * (ulong)(i % size), U16(d));
        }
        Poke(b, avail + 2, U16(chains));
        for (int i = 0; i < chains; i++) b.U8((int)DeviceRingTarget.Op.Pop);
        if (cfg.HasFlag(DeviceRingTarget.Config.InOrder)) b.U8((int)DeviceRingTarget.Op.AddUsedBatch).U8(chains - 1).U8(1);
        else for (int i = 0; i < chains; i++) b.U8((int)DeviceRingTarget.Op.AddUsed).U8(0).U8(1);
        b.U8((int)DeviceRingTarget.Op.NeedsInterrupt).U8((int)DeviceRingTarget.Op.Notifications).U8(1);
        return b.ToArray();
    }

    private static byte[] Packed(DeviceRingTarget.Config cfg, int chains)
    {
        const byte sizeByte = 7;   // 8 entries
        var (_, desc, _, _) = DeviceRingTarget.Placement(true, sizeByte, 0);
        var b = new InputBuilder().U8((int)(cfg | DeviceRingTarget.Config.Packed)).U8(sizeByte).U8(0).U8(15);
        const ushort avail = 1 << 7, next = 1, write = 2;
        for (int i = 0; i < chains; i++)
        {
            int slot = i * 2;
            ulong buf = 0x3000 + (ulong)i * 0x100;
            // Packed descriptor: addr, len, id, flags; the head's flags are written last, as a driver publishes.
            Poke(b, desc + (ulong)(slot + 1) * 16, new InputBuilder().U64(buf + 0x40).U32(32).U16(i).U16(avail | write).ToArray());
            Poke(b, desc + (ulong)slot * 16, new InputBuilder().U64(buf).U32(16).U16(i).U16(avail | next).ToArray());
        }
        for (int i = 0; i < chains; i++) b.U8((int)DeviceRingTarget.Op.Pop);
        if (cfg.HasFlag(DeviceRingTarget.Config.InOrder)) b.U8((int)DeviceRingTarget.Op.AddUsedBatch).U8(chains - 1).U8(1);
        else for (int i = 0; i < chains; i++) b.U8((int)DeviceRingTarget.Op.AddUsed).U8(0).U8(1);
        b.U8((int)DeviceRingTarget.Op.NeedsInterrupt).U8((int)DeviceRingTarget.Op.Notifications).U8(1);
        return b.ToArray();
    }
}
