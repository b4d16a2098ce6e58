public enum DeltacastJSONPlaceholder {}
