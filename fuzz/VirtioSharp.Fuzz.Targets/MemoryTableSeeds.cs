namespace VirtioSharp.Fuzz.Targets;

/// <summary>Memory/IOTLB seeds: a two-region table, an IOTLB mapping across the edge between them, lookups and reads there.</summary>
public static class MemoryTableSeeds
{
    private static InputBuilder Region(InputBuilder b, int file, int gpaPage, int pages, int uaddrPage) =>
        b.U8(file).U8(gpaPage).U8(pages - 1).U8(uaddrPage);

    private static InputBuilder Op(InputBuilder b, MemoryTableTarget.Op op) => b.U8((int)op);

    public static IEnumerable<(string Name, byte[] Input)> Generate()
    {
        // Two adjacent regions in user space (pages 0..3 of file 0, 4..7 of file 1), apart in GPA.
        var table = Region(Region(Op(new InputBuilder(), MemoryTableTarget.Op.SetTable).U8(1), 0, 0x10, 4, 0), 1, 0x40, 4, 4);
        var b = Op(table, MemoryTableTarget.Op.IotlbUpdate)
            .U8(0).U16(0x100)                      // iova 0x1000
            .U8(0).U8(8)                           // 8 pages
            .U8(1).U32(0)                          // uaddr = base
            .U8(3);                                // read-write
        Op(b, MemoryTableTarget.Op.Translate).U8(3).U8(5).U8(0);   // iova 0x4ff8: 8 bytes before the region edge
        Op(b, MemoryTableTarget.Op.ReadIova).U8(3).U8(5).U8(31);
        Op(b, MemoryTableTarget.Op.CheckIova).U8(2).U8(3).U8(5).U8(63);
        Op(b, MemoryTableTarget.Op.ReadGpa).U8(0).U16(0x13f8 / 16 * 1).U8(15);
        Op(b, MemoryTableTarget.Op.UserToGpa).U8(1).U32(0x3ff0).U8(1).U16(0x20);
        Op(b, MemoryTableTarget.Op.IotlbInvalidate).U8(0).U16(0x200).U8(0).U8(1);
        Op(b, MemoryTableTarget.Op.Translate).U8(0).U16(0x200).U8(0);
        yield return ("table-iotlb-edge", b.ToArray());

        var add = Op(new InputBuilder(), MemoryTableTarget.Op.AddRegion);
        Region(add, 2, 0x80, 1, 0x20);
        Region(Op(add, MemoryTableTarget.Op.AddRegion), 0, 0x81, 4, 0x21);
        Op(add, MemoryTableTarget.Op.ReadGpa).U8(0).U16(0x80ff0 / 16 % 0x10000).U8(31);
        Op(add, MemoryTableTarget.Op.RemoveRegion).U8(0);
        Op(add, MemoryTableTarget.Op.ReadGpa).U8(0).U16(0x8100).U8(7);
        yield return ("add-remove", add.ToArray());

        // Refusals: an overlapping table, a region past its file, an IOTLB update that wraps.
        var bad = Region(Region(Op(new InputBuilder(), MemoryTableTarget.Op.SetTable).U8(1), 0, 0x10, 4, 0), 1, 0x12, 4, 8);
        Region(Op(bad, MemoryTableTarget.Op.AddRegion), 2, 0x90, 2, 0x30);
        Op(bad, MemoryTableTarget.Op.IotlbUpdate).U8(2).U64(ulong.MaxValue - 0xfff).U8(0).U8(2).U8(1).U32(0).U8(1);
        yield return ("refusals", bad.ToArray());
    }
}
