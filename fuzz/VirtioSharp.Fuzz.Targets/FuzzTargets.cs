namespace VirtioSharp.Fuzz.Targets;

/// <summary>Every target by the name used on the command line and for fuzz/corpus/NAME, with its seed generator.</summary>
public static class FuzzTargets
{
    /// <summary>Target names with their entry points and seed inputs.</summary>
    public static IReadOnlyDictionary<string, (FuzzTarget Run, Func<IEnumerable<(string Name, byte[] Input)>> Seeds)> All { get; } =
        new Dictionary<string, (FuzzTarget, Func<IEnumerable<(string, byte[])>>)>
        {
            ["device-ring"] = (DeviceRingTarget.Run, DeviceRingSeeds.Generate),
            ["driver-ring"] = (DriverRingTarget.Run, DriverRingSeeds.Generate),
            ["blk"] = (BlkRequestTarget.Run, BlkRequestSeeds.Generate),
            ["inflight"] = (InflightRecoveryTarget.Run, InflightRecoverySeeds.Generate),
            ["memory-iotlb"] = (MemoryTableTarget.Run, MemoryTableSeeds.Generate),
            ["vhost-stream"] = (VhostStreamTarget.Run, VhostStreamSeeds.Generate),
        };
}
