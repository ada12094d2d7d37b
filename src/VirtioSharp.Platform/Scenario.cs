using VirtioSharp.Devices.Block;

namespace VirtioSharp.Platform;

/// <summary>A named, deterministic setup from the 2018 "virtio: use DMA API for all devices" thread.</summary>
public sealed record Scenario
{
    public required string Name { get; init; }
    public required string Description { get; init; }
    public required ScenarioOutcome Expected { get; init; }
    public SimPlatformOptions Platform { get; init; } = new();
    public string Transport { get; init; } = "pci";
    public Placement Placement { get; init; } = new();
    public DriverSetup Driver { get; init; } = new();
    public BlockDeviceOptions Device { get; init; } = new();
    /// <summary>Unmap without IOTLB invalidation (a driver bug), then look whether the device still reaches the page.</summary>
    public bool SkipInvalidation { get; init; }
}
