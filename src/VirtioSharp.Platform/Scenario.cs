using VirtioSharp.Devices.Block;

namespace VirtioSharp.Platform;

/// <summary>A named, deterministic setup from the 2018 "virtio: use DMA API for all devices" thread.</summary>
public sealed record Scenario
{
    /// <summary>Short name, used to pick the scenario on the command line.</summary>
    public required string Name { get; init; }
    /// <summary>What the scenario shows, in a sentence.</summary>
    public required string Description { get; init; }
    /// <summary>The outcome the scenario is expected to have.</summary>
    public required ScenarioOutcome Expected { get; init; }
    /// <summary>The simulated machine.</summary>
    public SimPlatformOptions Platform { get; init; } = new();
    /// <summary>Transport the block device is plugged in on: "mmio" or "pci".</summary>
    public string Transport { get; init; } = "pci";
    /// <summary>Where the device sits (IOMMU, coherence, DMA offset).</summary>
    public Placement Placement { get; init; } = new();
    /// <summary>The driver's choices.</summary>
    public DriverSetup Driver { get; init; } = new();
    /// <summary>The block device's shape and offered features.</summary>
    public BlockDeviceOptions Device { get; init; } = new();
    /// <summary>The device keeps SMP barriers although ORDER_PLATFORM was negotiated (a device bug).</summary>
    public bool DeviceIgnoresOrderPlatform { get; init; }
    /// <summary>Unmap without IOTLB invalidation (a driver bug), then look whether the device still reaches the page.</summary>
    public bool SkipInvalidation { get; init; }
}
